"""Trials whose loss went non-finite: their epochs from there on do not count.

A NaN loss stops a trial (`TerminateOnNaN`), but a NaN model still scores
some accuracy, so keras-tuner would rank it by epochs trained on garbage.
`mark_divergence` sets the objective to its worst value from the first
non-finite loss on, and the trial records a `DIVERGED` metric so that its
status reads "diverged", also after a resume.
"""

import math

import numpy as np

# A trial metric: 1.0 when the loss went non-finite, else 0.0.
DIVERGED = "diverged"


def mark_divergence(history, objective):
    """Sets the objective to its worst value from the first non-finite loss on.

    Returns whether the loss diverged. A NaN loss stops the trial
    (`TerminateOnNaN`), and a NaN model still scores some accuracy, so the
    epochs from there on must not count.

    >>> import keras, keras_tuner
    >>> history = keras.callbacks.History()
    >>> history.history = {"loss": [1.0, float("nan")],
    ...                    "val_accuracy": [0.5, 0.2]}
    >>> mark_divergence(history, keras_tuner.Objective("val_accuracy", "max"))
    True
    >>> history.history["val_accuracy"]
    [0.5, -inf]

    Args:
        history: a `keras.callbacks.History`; its objective series is
            changed in place.
        objective: a `keras_tuner.Objective` (its name and direction).
    """
    losses = np.asarray(history.history.get("loss", []), dtype="float64")
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size or objective.name not in history.history:
        return bool(bad.size)
    worst = -math.inf if objective.direction == "max" else math.inf
    values = history.history[objective.name]
    for epoch in range(bad[0], len(values)):
        values[epoch] = worst
    return True


def record_divergence(history, objective):
    """Marks `history` (see `mark_divergence`) and adds its `DIVERGED` series.

    The flag is a per-epoch series so that the oracle keeps it as a trial
    metric, and so across a resume.

    Args:
        history: a `keras.callbacks.History` of one trial's fit.
        objective: a `keras_tuner.Objective`.
    """
    diverged = mark_divergence(history, objective)
    history.history[DIVERGED] = [float(diverged)] * len(
        history.history.get("loss", [])
    )


def status(trial):
    """A finished keras-tuner trial's status: "completed", "diverged", "failed".

    Args:
        trial: a `keras_tuner.engine.trial.Trial` that is no longer running.
    """
    if trial.status != "COMPLETED":
        return "failed"
    if trial.metrics.exists(DIVERGED) and trial.metrics.get_last_value(
        DIVERGED
    ):
        return "diverged"
    return "completed"
