"""Rules that pick a learning rate from a range test's curve.

Each rule is a pure function of the swept rates and the (smoothed) losses,
both sequences of the same length with the rates increasing, and returns one
rate. They disagree by design; `find_learning_rate` computes all of them and
lets the user choose (Smith 2015; Lightning's and fastai's learning-rate
finders).

    minimum    the rate of the lowest loss, divided by 10 (the default of
               `find_learning_rate`; fastai's `minimum`)
    steepest   the rate where the loss falls fastest against log(rate)
               (PyTorch Lightning's suggestion up to 2.5.2)
    valley     half way down the longest stretch of falling loss (fastai's
               `valley`, its default)

Which library computes what (read in their sources):

- PyTorch Lightning, `lr_find(...).suggestion()`: the minimum of the
  gradient of the smoothed loss, skipping the first 10 points and the last
  one. Up to 2.5.2 the gradient is taken against the step index
  (`np.gradient(losses)` in 1.x, `torch.gradient(losses)` after pull request
  #17264), which on its exponential sweep is the gradient against log(rate)
  up to a constant:
  `steepest` picks the same point except that it skips the first and last
  tenth of the curve. From 2.5.3 (pull request #21055) Lightning
  differentiates against the rate itself (`torch.gradient(losses,
  spacing=[lrs])`), which weights each slope by 1 / rate and so moves the
  suggestion towards the low rates: that is not `steepest`.
- fastai 2 (`fastai/callback/schedule.py`), after trimming the curve to
  `[num_it // 10 : -5]` and cutting it at the first NaN: `valley` (the
  default of `Learner.lr_find`) is the same computation as `valley` here;
  `minimum` is the lowest loss's rate / 10, as here; `steep` is a forward
  difference against log(rate) and returns the left point of the steepest
  segment, close to but not the same as `steepest` (central differences).
  The rules here run on the whole sweep, without fastai's trimming.
"""

import reprlib

import numpy as np

from keras_trainopt._internal import validation


def _curve(learning_rates, losses):
    rates = validation.check_floats("learning_rates", learning_rates, ndim=1)
    values = validation.check_floats("losses", losses, ndim=1)
    if rates.shape != values.shape or rates.size < 2:
        raise ValueError(
            "`learning_rates` and `losses` must be 1-D sequences of the same "
            f"length >= 2. Received lengths {rates.size} and {values.size}"
        )
    if not (np.all(np.isfinite(rates)) and np.all(rates > 0)
            and np.all(np.diff(rates) > 0)):
        raise ValueError(
            "`learning_rates` must be finite, > 0 and strictly increasing, "
            "as a range test sweeps them. Received: learning_rates="
            f"{reprlib.repr(rates.tolist())}"
        )
    keep = np.isfinite(values)
    if keep.sum() < 2:
        raise ValueError(
            "Fewer than 2 finite losses: `losses` must hold at least 2 finite "
            "values (in a range test, the sweep diverged at once: lower "
            "`lr_min`). Received: "
            f"losses={reprlib.repr(values.tolist())}"
        )
    return rates[keep], values[keep]


def steepest(learning_rates, losses):
    """The rate where the loss falls fastest per unit of log(rate).

    The minimum of the gradient of the loss with respect to log10(rate),
    skipping the first and last tenth of the curve, where smoothing is least
    reliable. It is PyTorch Lightning's suggestion up to 2.5.2, which
    differentiates against the step index (log(rate) on its exponential
    sweep) and skips the first 10 points and the last one; Lightning 2.5.3
    and later differentiate against the rate itself, which suggests lower
    rates. Not the default: trained at its suggestion, it was the least
    accurate rule on all three problems of `benchmarks/range_test_rules.py`.

    >>> import numpy as np
    >>> rates = np.logspace(-4, 0, 41)
    >>> losses = 1 / (1 + np.exp(4 * (np.log10(rates) + 2)))  # falls at 1e-2
    >>> float(steepest(rates, losses))
    0.01
    """
    rates, values = _curve(learning_rates, losses)
    slope = np.gradient(values, np.log10(rates))
    margin = len(rates) // 10
    window = slice(margin, len(rates) - margin) if len(rates) > 10 else slice(None)
    index = np.argmin(slope[window]) + (window.start or 0)
    return float(rates[index])


def minimum(learning_rates, losses):
    """The rate of the lowest loss, divided by 10.

    The classic rule of thumb (fastai's `minimum`): the loss is lowest just
    before the rate becomes too large, so a tenth of that rate is safely on
    the stable side. `find_learning_rate`'s default: it gave the best median
    accuracy on the three problems of `benchmarks/range_test_rules.py`.

    >>> float(minimum([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0]))
    0.01
    """
    rates, values = _curve(learning_rates, losses)
    return float(rates[np.argmin(values)] / 10.0)


def valley(learning_rates, losses):
    """The rate about half way down the longest falling stretch (fastai).

    fastai's `valley` (the default of fastai 2's `lr_find`): the longest run
    of decreasing loss is found as a longest decreasing subsequence (so
    plateaus and noise do not break it), and the suggestion is the point
    `floor(d / 3) + floor(d / 6)` steps past its start, `d` being its length
    in steps.

    >>> import numpy as np
    >>> rates = np.logspace(-4, 0, 9)
    >>> round(valley(rates, [5, 5, 4, 3, 2, 1, 0.5, 2, 9]), 5)  # 10 ** -2.5
    0.00316
    """
    rates, values = _curve(learning_rates, losses)
    n = len(values)
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if values[i] < values[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    sections = (end - start) / 3
    index = start + int(sections) + int(sections / 2)
    return float(rates[index])


RULES = {"steepest": steepest, "minimum": minimum, "valley": valley}
