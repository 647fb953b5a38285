"""TensorBoard HParams records: one experiment, one session per run folder.

The HParams dashboard reads an experiment (the hyperparameters with their
domains, and the metrics) from the top folder of a log directory, and one
session per run folder (its hyperparameter values and metric curves). The
records are built by TensorBoard's own hparams summary API
(`tensorboard.plugins.hparams.summary_v2`) and written through
`reporting.tensorboard.open_run`, like every other event file here.
`search_hyperparameters(log_dir=...)` writes one session per trial.

>>> import tempfile
>>> from keras_trainopt.reporting import hparams
>>> log_dir = tempfile.mkdtemp()
>>> hparams.write_session(log_dir, "coarse-00", {"learning_rate": 0.1},
...                       {"val_accuracy": [0.5, 0.75]}, score=0.75)
['val_accuracy']
>>> hparams.write_experiment(
...     log_dir, hparams.domains(ranges={"learning_rate": (1e-3, 1.0)}),
...     ["val_accuracy"])
"""

import math

from tensorboard.plugins.hparams import summary_v2 as hparams_summary

from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard

# The metric tag of a session's score.
SCORE = tags.SEARCH_SCORE


def domains(choices=None, ranges=None, fixed=None, integers=()):
    """`{name: Domain}` for `write_experiment`, in the order given.

    The dashboard filters and colours sessions by these domains: a discrete
    set of values, or an interval.

    Args:
        choices: `{name: values}`, each a discrete domain of its values.
        ranges: `{name: (low, high)}`, each an interval: of integers for
            the names in `integers`, of reals otherwise.
        fixed: `{name: value}`, each a discrete domain of one value.
        integers: the names of `ranges` whose values are whole numbers.
    """
    result = {}
    for name, values in (choices or {}).items():
        result[name] = hparams_summary.Discrete(list(values))
    for name, (low, high) in (ranges or {}).items():
        if name in integers:
            result[name] = hparams_summary.IntInterval(int(low), int(high))
        else:
            result[name] = hparams_summary.RealInterval(float(low),
                                                        float(high))
    for name, value in (fixed or {}).items():
        result[name] = hparams_summary.Discrete([value])
    return result


def write_session(log_dir, run, values, history, score=None, skip=()):
    """Writes one session to `<log_dir>/<run>`: values, curves and score.

    Why: a session is what the HParams dashboard lists as one row, so one
    trial's values, its per-epoch metrics and its score go together.
    Non-finite points of a curve are left out (TensorBoard cannot draw them),
    as is a non-finite score.

    Args:
        log_dir: the TensorBoard folder, or `None` to write nothing.
        run: the session's folder name, also its trial id.
        values: `{hparam name: bool, number, string or None}` (`None` values
            are left out).
        history: `{metric tag: [value per epoch]}`, as `History.history`.
        score: the session's score, written as metric `SCORE` at step 0.
        skip: tags of `history` not to write.

    Returns:
        The tags of `history` written, in order; `[]` when nothing was
        written (no `log_dir`, or not the chief worker).
    """
    writer = tensorboard.open_run(log_dir, run)
    if writer is None:
        return []
    written = []
    try:
        writer.hparams(values, trial_id=run)
        for tag, series in history.items():
            if tag in skip:
                continue
            finite = [(step, v) for step, v in enumerate(series)
                      if v is not None and math.isfinite(v)]
            writer.scalars(tag, [s for s, _ in finite],
                           [v for _, v in finite])
            written.append(tag)
        if score is not None and math.isfinite(score):
            writer.scalar(SCORE, score, 0)
    finally:
        tensorboard.close_run(writer)
    return written


def write_experiment(log_dir, domains, metrics):
    """Writes the experiment to `log_dir` itself: the hparams and metrics.

    Why: without it the dashboard guesses the columns from the sessions and
    shows no score; with it every session's values and `SCORE` are columns.

    Args:
        log_dir: the TensorBoard folder, or `None` to write nothing.
        domains: `{hparam name: Domain}`, e.g. from `domains`.
        metrics: the metric tags the sessions recorded; `SCORE` comes first.
    """
    writer = tensorboard.open_run(log_dir, ".")
    if writer is None:
        return
    try:
        writer.hparams_config(domains, [SCORE, *metrics])
    finally:
        tensorboard.close_run(writer)
