"""Rules that pick a learning rate from a range test's curve.

Each rule is a pure function of the swept rates and the (smoothed) losses,
both sequences of the same length with the rates increasing, and returns one
rate. They disagree by design; `find_learning_rate` computes all of them and
lets the user choose (Smith 2015; Lightning's and fastai's learning-rate
finders).

    steepest   the rate where the loss falls fastest against log(rate)
    minimum    the rate of the lowest loss, divided by 10
    valley     half way down the longest stretch of falling loss (fastai)
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

    Lightning's default suggestion: the minimum of the gradient of the loss
    with respect to log10(rate), skipping the first and last tenth of the
    curve, where smoothing is least reliable.

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

    The classic rule of thumb: the loss is lowest just before the rate
    becomes too large, so a tenth of that rate is safely on the stable side.

    >>> float(minimum([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.0, 0.5, 3.0]))
    0.01
    """
    rates, values = _curve(learning_rates, losses)
    return float(rates[np.argmin(values)] / 10.0)


def valley(learning_rates, losses):
    """The rate about half way down the longest falling stretch (fastai).

    fastai's `valley`: the longest run of decreasing loss is found as a
    longest decreasing subsequence (so plateaus and noise do not break it),
    and the suggestion is the point `floor(d / 3) + floor(d / 6)` steps past
    its start, `d` being its length in steps.

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
