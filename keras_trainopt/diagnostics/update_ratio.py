"""The weight-update-to-weight ratio, cs231n's check of the learning rate."""

import numpy as np

from keras_trainopt._internal import validation


def update_ratio(before, after):
    """`||after - before|| / ||before||` for one weight array (Frobenius norms).

    About 1e-3 is healthy; far lower means the learning rate is too low, far
    higher that it is too high (cs231n, "Neural Networks Part 3", ratio of
    weights:updates). A zero-norm `before` gives `inf` (or `nan` if nothing
    moved).

    >>> from keras_trainopt.diagnostics import update_ratio
    >>> round(update_ratio([3.0, 4.0], [3.003, 4.004]), 9)  # 0.005 / 5
    0.001

    Args:
        before: the weight array before the update (any array-like).
        after: the same array after the update.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    ratio of weights:updates.
    """
    before = validation.check_floats("before", before)
    after = validation.check_floats("after", after)
    if before.shape != after.shape:
        raise ValueError(
            "`before` and `after` must be the same weight array, of one "
            f"shape. Received: shapes {before.shape} and {after.shape}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.linalg.norm(after - before) / np.linalg.norm(before))


def layer_verdict(ratio, low, high):
    """`"too_low"`, `"too_high"` or `"healthy"` for a ratio and its bounds."""
    if not np.isfinite(ratio) or ratio > high:
        return "too_high"
    if ratio < low:
        return "too_low"
    return "healthy"
