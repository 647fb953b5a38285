"""Train-versus-validation gap: overfitting, underfitting or a good fit."""

import math

from keras_trainopt._internal import validation as checks
from keras_trainopt.diagnostics.loss_curve import Diagnosis

_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "crossentropy",
                    "hinge", "msle", "huber", "poisson")


def lower_is_better(metric):
    """True for loss-like metric names (`loss`, `mse`, `val_..._error`, ...)."""
    name = metric.lower()
    return any(word in name for word in _LOWER_IS_BETTER)


def generalization_gap(train, validation, lower_better):
    """How far validation falls behind training; positive means behind.

        gap = train - validation    (accuracy-like metrics)
        gap = validation - train    (loss-like metrics)
    """
    return validation - train if lower_better else train - validation


def diagnose_fit(
    train, validation, *, lower_better, overfitting_gap, underfitting_gap,
    underfitting_value,
):
    """Overfitting, underfitting or a good fit, from one epoch's values.

    - `"overfitting"`: the gap exceeds `overfitting_gap`;
    - `"underfitting"`: the gap is within `underfitting_gap` (validation
      tracks training) and training itself is worse than
      `underfitting_value` (`None` skips this check);
    - `"good_fit"` otherwise.

    >>> from keras_trainopt.diagnostics import diagnose_fit
    >>> diagnose_fit(0.99, 0.75, lower_better=False, overfitting_gap=0.1,
    ...              underfitting_gap=0.05, underfitting_value=0.8).verdict
    'overfitting'
    >>> diagnose_fit(0.55, 0.54, lower_better=False, overfitting_gap=0.1,
    ...              underfitting_gap=0.05, underfitting_value=0.8).verdict
    'underfitting'

    The gap is `train - validation` for a metric where higher is better,
    `validation - train` where lower is better (a loss).

    Args:
        train, validation: the metric on the training and validation data.
        lower_better: `True` for losses and errors.
        overfitting_gap: the gap above which the fit counts as overfitting.
        underfitting_gap: the gap within which validation tracks training.
        underfitting_value: training values worse than this, with a small
            gap, count as underfitting (`None`: never).

    Returns:
        A `Diagnosis(verdict, reason)`.

    Reference: cs231n, "Neural Networks Part 3", train/validation accuracy.
    """
    # NaN and inf are values a diverged run logs: judged, not refused
    train = checks.check_real("train", train, finite=False)
    validation = checks.check_real("validation", validation, finite=False)
    lower_better = checks.check_bool("lower_better", lower_better)
    overfitting_gap = checks.check_real("overfitting_gap", overfitting_gap,
                                        low=0.0)
    underfitting_gap = checks.check_real("underfitting_gap", underfitting_gap,
                                         low=0.0)
    underfitting_value = checks.check_real(
        "underfitting_value", underfitting_value, allow_none=True
    )
    gap = generalization_gap(train, validation, lower_better)
    if gap > overfitting_gap:
        return Diagnosis(
            "overfitting",
            f"validation falls behind training by {gap:.3g} (train "
            f"{train:.4g}, validation {validation:.4g}): add regularization "
            "(L2, dropout), get more data, or stop earlier",
        )
    poor = underfitting_value is not None and (
        train > underfitting_value if lower_better
        else train < underfitting_value
    )
    if abs(gap) <= underfitting_gap and poor:
        return Diagnosis(
            "underfitting",
            f"validation tracks training (gap {gap:.3g}) but training itself "
            f"is poor ({train:.4g}, worse than {underfitting_value:g}): use a "
            "bigger model, train longer, or regularize less",
        )
    return Diagnosis(
        "good_fit",
        f"gap {gap:.3g} between train {train:.4g} and validation "
        f"{validation:.4g}",
    )


def overfitting_trend(train_losses, val_losses, gaps, *, overfitting_gap,
                      rise=0.1, loss_ratio=3.0):
    """Overfitting seen in the trend of the losses, or `None`.

    A fixed gap threshold misses a model that fits its training data
    perfectly while its validation loss climbs. Two scale-free rules (ratios
    of losses, so they hold for any loss's units):

    - *validation loss rising*: it is more than `rise` (10%) above its
      minimum, reached at an earlier epoch, while the training loss fell by
      more than `rise` since that epoch (the classic early-stopping point);
    - *a wide loss gap*: the validation loss is `loss_ratio` (3) times the
      training loss or more, and the gap on the monitored metric exceeds
      half of `overfitting_gap` (a model that fits its training data far
      better than anything else, with the metric's gap close to the
      threshold).

    >>> from keras_trainopt.diagnostics.generalization import (
    ...     overfitting_trend)
    >>> print(overfitting_trend([1.0, 0.5, 0.2, 0.1], [1.0, 0.6, 0.7, 0.8],
    ...                         [0.0, 0.02, 0.05, 0.08], overfitting_gap=0.1))
    ... # doctest: +NORMALIZE_WHITESPACE
    the validation loss rose 33% above its minimum (epoch 2) while the
    training loss fell 80%

    Args:
        train_losses, val_losses: the training and validation loss of each
            epoch, oldest first.
        gaps: the gap on the monitored metric of each epoch.
        overfitting_gap: the monitor's gap threshold.
        rise: the relative rise (and fall) that counts.
        loss_ratio: validation over training loss that counts as a wide gap.

    Returns:
        A phrase naming the evidence, or `None`.

    Reference: Prechelt (1998), "Early Stopping - But When?" (the
    generalization loss: validation error relative to its minimum);
    cs231n, "Neural Networks Part 3", train/validation accuracy.
    """
    pairs = [(t, v) for t, v in zip(train_losses, val_losses, strict=True)
             if math.isfinite(t) and math.isfinite(v)]
    if len(pairs) < 3:
        return None
    train, val = zip(*pairs, strict=True)
    best = min(range(len(val)), key=val.__getitem__)
    if (best < len(val) - 1 and val[best] > 0
            and val[-1] > (1 + rise) * val[best]
            and train[-1] < (1 - rise) * train[best]):
        return (f"the validation loss rose {val[-1] / val[best] - 1:.0%} "
                f"above its minimum (epoch {best + 1}) while the training "
                f"loss fell {1 - train[-1] / train[best]:.0%}")
    finite_gaps = [g for g in gaps if math.isfinite(g)]
    if (train[-1] > 0 and val[-1] >= loss_ratio * train[-1] and finite_gaps
            and finite_gaps[-1] > overfitting_gap / 2):
        return (f"the validation loss is {val[-1] / train[-1]:.1f}x the "
                f"training loss, with a gap of {finite_gaps[-1]:.3g}")
    return None


def at_chance(train_loss, chance_loss, train_value=None, chance_value=None,
              *, margin=0.1):
    """Whether training is no better than chance, or `None` if unknown.

    True when the training loss is at least `1 - margin` of the chance-level
    loss (ln(classes) for a classification cross-entropy), or an accuracy
    is at most `margin` of the way from chance to perfect:

        train_loss >= (1 - margin) * chance_loss
        train_value <= chance_value + margin * (1 - chance_value)

    >>> from keras_trainopt.diagnostics.generalization import at_chance
    >>> at_chance(0.69, 0.6931), at_chance(0.2, 0.6931, 0.9, 0.5)
    (True, False)

    Args:
        train_loss, chance_loss: the training loss and its chance level.
        train_value, chance_value: an accuracy and its chance level (1 /
            classes), or `None`.
        margin: how close to chance counts as chance.

    Reference: cs231n, "Neural Networks Part 3", look for correct loss at
    chance performance.
    """
    verdicts = []
    if chance_loss and train_loss is not None and math.isfinite(train_loss):
        verdicts.append(train_loss >= (1 - margin) * chance_loss)
    if chance_value is not None and train_value is not None and math.isfinite(
            train_value):
        verdicts.append(train_value <= chance_value
                        + margin * (1 - chance_value))
    return any(verdicts) if verdicts else None
