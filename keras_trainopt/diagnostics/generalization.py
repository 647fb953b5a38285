"""Train-versus-validation gap: overfitting, underfitting or a good fit."""

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
