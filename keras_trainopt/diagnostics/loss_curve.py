"""Reading the learning rate from the shape of the loss curve.

The cs231n notes ("Babysitting the learning process") sketch four curves: a
very high learning rate makes the loss explode; a high one drops it fast and
then leaves it stuck, jumping around; a low one lowers it slowly and almost
linearly; a good one drops it fast and then flattens, like an exponential.
These functions turn those pictures into numbers.
"""

import math
from typing import NamedTuple

import numpy as np

from keras_trainopt._internal import validation


class Diagnosis(NamedTuple):
    """A verdict and the reason for it, in words a user can act on.

    >>> from keras_trainopt.diagnostics import Diagnosis
    >>> Diagnosis("good", "the loss fell and flattened").verdict
    'good'

    Args:
        verdict: a short code, e.g. "good", "learning_rate_too_high".
        reason: the evidence, in a sentence.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    loss function.
    """

    verdict: str
    reason: str


class RunningSmooth:
    """The bias-corrected moving average of a loss, one value at a time.

        avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,  avg_{-1} = 0
        smooth_i = avg_i / (1 - beta ** (i + 1))

    (the smoothing of fastai's and Lightning's learning-rate finders).

    >>> from keras_trainopt.diagnostics import RunningSmooth
    >>> running = RunningSmooth()
    >>> running.update(3.0), round(running.update(1.0), 4)
    (3.0, 1.9899)

    Args:
        beta: the smoothing factor in [0, 1).
        average, count: a state to resume from (the raw average and the
            number of losses seen).

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2015; fastai's `LRFinder`.
    """

    def __init__(self, beta=0.98, average=0.0, count=0):
        self.beta = validation.check_real(
            "beta", beta, low=0.0, high=1.0, high_open=True
        )
        self.average = validation.check_real("average", average)
        self.count = validation.check_int("count", count, low=0)

    def update(self, loss):
        """Adds `loss`; returns the smoothed value."""
        self.average = self.beta * self.average + (1.0 - self.beta) * loss
        self.count += 1
        return self.value

    @property
    def value(self):
        """The smoothed value (NaN before the first loss)."""
        if self.count == 0:
            return math.nan
        return self.average / (1.0 - self.beta**self.count)


def smooth(losses, beta=0.98):
    """`RunningSmooth` over a whole loss series, as an array.

    >>> from keras_trainopt.diagnostics import smooth
    >>> smooth([3.0, 1.0]).round(4).tolist()  # bias-corrected from the start
    [3.0, 1.9899]

    Args:
        losses: the loss series.
        beta: the smoothing factor in [0, 1).

    Reference: see `RunningSmooth`.
    """
    losses = validation.check_floats("losses", losses, ndim=1)
    running = RunningSmooth(beta)
    return np.array([running.update(float(loss)) for loss in losses])


# What each pattern of `loss_curve_pattern` says of the learning rate.
PATTERN_VERDICTS = {
    "insufficient_data": "insufficient_data",
    "non_finite": "learning_rate_too_high",
    "diverged": "learning_rate_too_high",
    "blow_up": "learning_rate_too_high",
    "oscillating": "learning_rate_too_high",
    "rebound": "learning_rate_too_high",
    "flat": "learning_rate_too_low",
    "slow": "learning_rate_too_low",
    "at_chance": "good",
    "good": "good",
}
# A loss at or above this fraction of the chance level has learned nothing;
# a peak above this multiple of it is a blow-up.
CHANCE_FRACTION = 0.9
BLOW_UP_FACTOR = 2.0
# A loss that fell and then rose back to this multiple of its lowest level,
# giving back at least this fraction of its fall, has rebounded.
REBOUND_FACTOR = 1.5
REBOUND_FRACTION = 0.25


def raw_levels(losses):
    """`(first, recent, peak)` of the finite losses: raw means, no smoothing.

    `first` is the mean of the first 3 readings, `recent` the mean of the
    last `max(3, n // 10)`, `peak` the largest; NaN when there are none.
    The sentences quote these: a smoothed value lags behind the curve.

    >>> from keras_trainopt.diagnostics.loss_curve import raw_levels
    >>> [round(v, 6) for v in raw_levels([3.0, 2.0, 1.0, 0.5, 0.4, 0.3])]
    [2.0, 0.4, 3.0]
    """
    losses = np.asarray(losses, dtype="float64")
    losses = losses[np.isfinite(losses)]
    if not len(losses):
        return math.nan, math.nan, math.nan
    tail = max(3, len(losses) // 10)
    return (float(np.mean(losses[:3])), float(np.mean(losses[-tail:])),
            float(np.max(losses)))


def lowest_level(losses):
    """`(low, end)`: the lowest mean of a window of readings, and where.

    The window is `recent`'s in `raw_levels` (`max(3, n // 10)` readings),
    so `low` and `recent` average as many readings; `end` is the index
    after the lowest window. NaN and 0 when there is no full window.

    >>> from keras_trainopt.diagnostics.loss_curve import lowest_level
    >>> lowest_level([3.0, 1.0, 0.5, 0.5, 0.5, 0.9, 1.2, 1.5])
    (0.5, 5)
    """
    losses = np.asarray(losses, dtype="float64")
    losses = losses[np.isfinite(losses)]
    window = max(3, len(losses) // 10)
    if len(losses) < window:
        return math.nan, 0
    means = np.convolve(losses, np.full(window, 1.0 / window), mode="valid")
    start = int(np.argmin(means))
    return float(means[start]), start + window


def loss_curve_pattern(
    losses,
    *,
    chance_loss=None,
    min_steps=20,
    oscillation_threshold=0.5,
    linearity_threshold=0.6,
    flat_tolerance=0.02,
):
    """The shape of a batch-loss series, as a `Diagnosis(pattern, reason)`.

    Rules, checked in order on the finite series (`first`, `recent` and
    `peak` from `raw_levels`, the others on the smoothed series):

    - fewer than `min_steps` losses: `"insufficient_data"`;
    - *violent oscillation*: the median batch-to-batch change is more than
      `oscillation_threshold` times the median loss of the second half, and
      the second half is no lower than the first: `"oscillating"`;
    - *blow-up, then stuck* (needs `chance_loss`, e.g. ln(classes) for a
      classification cross-entropy): `recent >= 0.9 * chance_loss` and
      `peak >= 2 * chance_loss`: the loss rose far above the chance level
      and never came below it (cs231n: a very high rate makes the loss
      explode, or drop and get stuck at a worse value): `"blow_up"`;
    - *rebound*: the loss fell, then rose back: `recent` (the mean of the
      last `w = max(3, n // 10)` readings) is at least `1.5 * low` and has
      given back at least a quarter of the fall, `recent - low >= 0.25 *
      (first - low)`, where `low` is the lowest mean of `w` consecutive
      readings, ending before the last `w`. Scale-free: both are ratios of
      the curve's own levels. A rate too high for the weights it reached
      (or momentum too high) makes the loss climb back and bounce; a good
      or low rate never gives back a quarter of its fall: `"rebound"`;
    - *no progress*: the smoothed loss moved by less than `flat_tolerance`
      of its start: `"flat"` (judge from the start of training: a
      converged model is flat too);
    - *slow, nearly linear decrease*: the loss falls in both halves and the
      second half falls by at least `linearity_threshold` of what the first
      half fell (a good rate falls fast, then flattens): `"slow"`;
    - `recent >= 0.9 * chance_loss`: `"at_chance"` (the rate is not to
      blame for a model no better than chance);
    - otherwise `"good"`.

    `PATTERN_VERDICTS` maps each to what it says of the learning rate
    (`diagnose_loss_curve`). Non-finite losses and divergence are patterns
    that `LossMonitor` sees happen ("non_finite", "diverged").

    Examples:
        >>> import numpy as np
        >>> from keras_trainopt.diagnostics.loss_curve import (
        ...     loss_curve_pattern)
        >>> t = np.arange(100)
        >>> stuck = np.where(t < 5, 7.5, 2.4)  # up to 7.5, then ~ln(10)
        >>> loss_curve_pattern(stuck, chance_loss=np.log(10)).verdict
        'blow_up'
        >>> loss_curve_pattern(stuck).verdict  # no chance level: can't tell
        'good'

    Args:
        losses: batch losses in training order.
        chance_loss: the loss of a model that predicts the class
            frequencies (ln(classes) for balanced classes), or `None`.
        min_steps, oscillation_threshold, linearity_threshold,
            flat_tolerance: see `diagnose_loss_curve`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    loss function (the shapes of low, high and good learning rates) and
    "look for correct loss at chance performance".
    """
    losses = validation.check_floats("losses", losses, ndim=1)
    chance_loss = validation.check_real("chance_loss", chance_loss,
                                        low=0.0, low_open=True,
                                        allow_none=True)
    min_steps = validation.check_int("min_steps", min_steps, low=1)
    oscillation_threshold = validation.check_real(
        "oscillation_threshold", oscillation_threshold, low=0.0, low_open=True
    )
    linearity_threshold = validation.check_real(
        "linearity_threshold", linearity_threshold, low=0.0, low_open=True
    )
    flat_tolerance = validation.check_real(
        "flat_tolerance", flat_tolerance, low=0.0
    )
    losses = losses[np.isfinite(losses)]
    n = len(losses)
    if n < min_steps:
        return Diagnosis(
            "insufficient_data",
            f"only {n} finite batch losses; at least {min_steps} are needed",
        )
    first_raw, recent, peak = raw_levels(losses)
    half = n // 2
    first, second = losses[:half], losses[half:]
    level = float(np.median(np.abs(second))) or 1e-12
    jumps = float(np.median(np.abs(np.diff(second)))) if len(second) > 1 else 0.0
    if jumps > oscillation_threshold * level and np.mean(second) >= np.mean(
        first
    ):
        return Diagnosis(
            "oscillating",
            f"the loss oscillates violently (typical jump {jumps:.3g} on a "
            f"level of {level:.3g}) without going down: lower the learning "
            "rate, e.g. by 3-10x",
        )
    stuck = (chance_loss is not None
             and recent >= CHANCE_FRACTION * chance_loss)
    if stuck and peak >= BLOW_UP_FACTOR * chance_loss:
        return Diagnosis(
            "blow_up",
            f"the loss blew up to {peak:.4g} and then stayed at {recent:.4g} "
            f"(recent mean), no better than the chance level "
            f"{chance_loss:.4g}: the learning rate is far too high; lower "
            "it, e.g. by 10x",
        )
    low, low_end = lowest_level(losses)
    if (low_end <= n - max(3, n // 10) and first_raw > low > 0
            and recent >= REBOUND_FACTOR * low
            and recent - low >= REBOUND_FRACTION * (first_raw - low)):
        return Diagnosis(
            "rebound",
            f"the loss fell to {low:.4g} and then rose back to {recent:.4g} "
            f"(recent mean; {first_raw:.4g} at first): the learning rate is "
            "too high for the weights it reached; lower it, e.g. by 3-10x, "
            "or decay it",
        )
    curve = smooth(losses)
    start, middle, end = curve[0], curve[half], curve[-1]
    drop_first, drop_second = start - middle, middle - end
    change = abs(end - start) / max(abs(start), 1e-12)
    if change < flat_tolerance:
        return Diagnosis(
            "flat",
            f"the loss barely moved ({first_raw:.4g} at first, {recent:.4g} "
            f"recently, {change:.1%} smoothed) over {n} readings: raise the "
            "learning rate, e.g. by 10x, or find one with find_learning_rate",
        )
    if drop_first > 0 and drop_second > 0:
        linearity = drop_second / drop_first
        if linearity >= linearity_threshold:
            return Diagnosis(
                "slow",
                "the loss falls slowly and almost linearly (the second half "
                f"fell {linearity:.0%} as much as the first, to {recent:.4g} "
                "recently): raise the learning rate, e.g. by 3x, or find one "
                "with find_learning_rate",
            )
    if stuck:
        return Diagnosis(
            "at_chance",
            f"the loss fell from {first_raw:.4g} to {recent:.4g} (recent "
            f"mean), which is the chance level {chance_loss:.4g}: the model "
            "predicts no better than chance (a model too small, or data "
            "without signal)",
        )
    return Diagnosis(
        "good",
        f"the loss fell from {first_raw:.4g} to {recent:.4g} (recent mean) "
        "and is flattening",
    )


def diagnose_loss_curve(
    losses,
    *,
    min_steps=20,
    oscillation_threshold=0.5,
    linearity_threshold=0.6,
    flat_tolerance=0.02,
    chance_loss=None,
):
    """Diagnoses the learning rate from a batch-loss series.

    The verdict of `loss_curve_pattern`'s pattern (`PATTERN_VERDICTS`):

    - fewer than `min_steps` losses: `"insufficient_data"`;
    - *violent oscillation*: the median batch-to-batch change is more than
      `oscillation_threshold` times the median loss of the second half, and
      the second half is no lower than the first: `"learning_rate_too_high"`;
    - with `chance_loss`, a blow-up above twice the chance level and a loss
      stuck at or above it since: `"learning_rate_too_high"`;
    - *rebound*: the loss fell, then rose back to at least 1.5x its lowest
      level, giving back at least a quarter of its fall:
      `"learning_rate_too_high"` (see `loss_curve_pattern`);
    - *no progress*: the smoothed loss moved by less than `flat_tolerance`
      of its start: `"learning_rate_too_low"` (judge from the start of
      training: a converged model is flat too);
    - *slow, nearly linear decrease*: the loss falls in both halves and the
      second half falls by at least `linearity_threshold` of what the first
      half fell (a good rate falls fast, then flattens, so this ratio is
      small): `"learning_rate_too_low"`;
    - otherwise `"good"`.

    Non-finite losses and divergence are verdicts of the monitor that sees
    them happen (`LossMonitor`), not of this function.

    Args:
        losses: batch losses in training order.
        min_steps: fewest losses to judge from.
        oscillation_threshold: relative batch-to-batch change that counts as
            violent oscillation.
        linearity_threshold: ratio of second-half to first-half decrease that
            counts as linear.
        flat_tolerance: relative change of the smoothed loss below which it
            has not moved.
        chance_loss: the chance-level loss, or `None` (see
            `loss_curve_pattern`).

    Returns:
        A `Diagnosis(verdict, reason)`.

    Examples:
        >>> import numpy as np
        >>> from keras_trainopt.diagnostics import diagnose_loss_curve
        >>> t = np.arange(200)
        >>> diagnose_loss_curve(2.0 * np.exp(-t / 20) + 0.1).verdict
        'good'
        >>> diagnose_loss_curve(2.0 - 0.004 * t).verdict  # slow and linear
        'learning_rate_too_low'

        Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
        loss function (the shapes of low, high and good learning rates).
    """
    pattern, reason = loss_curve_pattern(
        losses, chance_loss=chance_loss, min_steps=min_steps,
        oscillation_threshold=oscillation_threshold,
        linearity_threshold=linearity_threshold,
        flat_tolerance=flat_tolerance,
    )
    return Diagnosis(PATTERN_VERDICTS[pattern], reason)


def is_diverging(smoothed_loss, best_loss, threshold):
    """True when the smoothed loss is not finite or exceeds `threshold` x best.

    The one divergence rule of the package: `LossMonitor` stops training
    with it, and `find_learning_rate` ends its sweep with it. A loss that
    has risen to several times its lowest smoothed value is not coming back
    at that learning rate (Smith 2015 stops the range test at 4x). The ratio
    means nothing for a best loss <= 0 (a loss that can be negative): then
    only a non-finite loss counts as divergence.

    >>> from keras_trainopt.diagnostics.loss_curve import is_diverging
    >>> is_diverging(4.1, 1.0, 4.0), is_diverging(3.9, 1.0, 4.0)
    (True, False)

    Args:
        smoothed_loss: the newest smoothed loss (see `RunningSmooth`).
        best_loss: the lowest smoothed loss before it (`math.inf` when there
            is none yet).
        threshold: the factor over `best_loss` that counts as divergence.

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2015; the learning-rate finders of fastai and Lightning.
    """
    if not math.isfinite(smoothed_loss):
        return True
    return best_loss > 0 and smoothed_loss > threshold * best_loss
