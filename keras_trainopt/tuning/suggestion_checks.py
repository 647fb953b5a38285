"""Whether a range test's suggested rate can be trusted: reasons it may not.

The rules in `suggestions` always return a rate, also from a curve where the
loss fell only through noise. On a partly trained model with BatchNorm the
bias-corrected smoothing "falls" through the noise of the first steps, and
the steepest fall can sit a decade above `lr_min` (5.3e-7, where the valley
is at 1e-3). `suggestion_doubts` names what is suspicious about one
suggestion, as a pure function of the curve, so `find_learning_rate` can
warn and keep the reasons in `LearningRateFinderResult.warnings`:

    low edge    the suggestion lies less than a decade (or 15% of the
                swept range in log scale, if less) above the first rate
                tried, or below it: the sweep saw nothing lower to compare
    high edge   the same below `lr_max`: the loss was still falling where
                the sweep ended
    no fall     the smoothed loss never falls 10% below its value at the
                suggestion at any higher rate: the suggestion is not on a
                descent
"""

import math

import numpy as np

from keras_trainopt.tuning import suggestions

# the edge: a decade of rates, or this share of a shorter sweep (log scale)
_EDGE_DECADES = 1.0
_EDGE_SHARE = 0.15
# a descent: the loss falls at least this share below its value
_MIN_FALL = 0.1


def suggestion_doubts(learning_rates, losses, suggestion, *, rule=None,
                      lr_max=None):
    """Sentences on why `suggestion` may not be a good rate; `[]` if none.

    >>> import numpy as np
    >>> rates = np.logspace(-7, 1, 81)
    >>> falling = 1 / (1 + np.exp(4 * (np.log10(rates) + 2)))  # falls at 1e-2
    >>> suggestion_doubts(rates, falling, 1e-2)
    []
    >>> len(suggestion_doubts(rates, falling, 5.3e-7, rule="steepest"))
    1

    Args:
        learning_rates: the rates tried, increasing.
        losses: the (smoothed) loss at each rate; non-finite values are
            skipped.
        suggestion: the rate a rule picked (> 0).
        rule: the rule's name, used in the sentences.
        lr_max: the end of the swept range (default: the last rate tried);
            a sweep that stopped early has no high edge to sit at.
    """
    rates, values = suggestions._curve(learning_rates, losses)
    suggestion = float(suggestion)
    if not (math.isfinite(suggestion) and suggestion > 0):
        raise ValueError(
            f"`suggestion` must be a finite rate > 0. Received: "
            f"suggestion={suggestion!r}"
        )
    top = float(rates[-1] if lr_max is None else lr_max)
    low, high = math.log10(rates[0]), math.log10(top)
    edge = min(_EDGE_DECADES, _EDGE_SHARE * max(high - low, 0.0))
    where = math.log10(suggestion)
    name = f"find_learning_rate (rule={rule!r})" if rule else "find_learning_rate"
    said = f"{name}: the suggested rate {suggestion:.3g}"
    doubts = []
    if where < low + edge:
        doubts.append(
            f"{said} sits at the low edge of the sweep (it starts at "
            f"{rates[0]:.3g}): the loss fell there through the noise of the "
            "first steps, or the range starts too high. Look at the curve "
            "(`result.plot()`), compare `result.suggestions` (e.g. "
            "rule='valley'), or start the sweep lower (`lr_min`)."
        )
    elif where > high - edge:
        doubts.append(
            f"{said} sits at the high edge of the sweep (it ends at "
            f"{top:.3g}): the loss was still falling there. Run the sweep "
            "to higher rates (`lr_max`)."
        )
    index = int(np.clip(np.searchsorted(rates, suggestion), 0, len(rates) - 1))
    at = values[index]
    if at > 0 and values[index:].min() > (1.0 - _MIN_FALL) * at:
        doubts.append(
            f"{said} is not on a descent: at no higher rate does the "
            f"smoothed loss fall {_MIN_FALL:.0%} below its value there "
            f"({at:.4g}). Look at the curve (`result.plot()`), compare "
            "`result.suggestions`, or run more `steps`."
        )
    return doubts
