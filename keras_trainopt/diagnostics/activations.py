"""Activation statistics: saturated tanh/sigmoid units and dead ReLUs.

A tanh or sigmoid unit whose output sits near an asymptote has a gradient
near zero and stops learning; a ReLU unit that outputs zero for every input
gets no gradient at all and is dead for good (cs231n, "Neural Networks Part
1", activation functions). Both are usually caused by initial weights that are
too large, or by a learning rate that is too high.
"""

import math

import numpy as np

from keras_trainopt._internal import validation

# Output range of each saturating kind: (low asymptote, high asymptote).
SATURATING = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
RECTIFYING = ("relu",)
# More buckets than any chart shows; beyond, NumPy fails or runs out of memory.
MAX_BINS = 100_000
# Outputs read first when looking for units that fire (`dead_fraction`).
_HEAD_VALUES = 65_536


def saturated_fraction(values, kind, tolerance=0.05):
    """Fraction of outputs within `tolerance` x range of an asymptote.

    For tanh (range [-1, 1], width 2): `|a| >= 1 - 2 * tolerance`; for
    sigmoid (range [0, 1]): `a <= tolerance` or `a >= 1 - tolerance`.
    Returns `None` for a kind that does not saturate.
    """
    if kind not in SATURATING:
        return None
    low, high = SATURATING[kind]
    margin = tolerance * (high - low)
    values = np.asarray(values)
    return float(np.mean((values <= low + margin) | (values >= high - margin)))


def dead_fraction(values, kind):
    """Fraction of units (last axis) that output zero for every probe input.

    `values` has the batch first and the units last (e.g. `(batch, units)` or
    `(batch, height, width, channels)`); a unit is dead when it is `<= 0`
    everywhere. Returns `None` for a kind that does not rectify.
    """
    if kind not in RECTIFYING:
        return None
    values = np.asarray(values)
    units = values.reshape(-1, values.shape[-1] if values.ndim >= 2 else 1)
    if units.shape[1] == 0:
        return float("nan")  # no units: as the mean of an empty array
    # Most units fire on some input early in the batch; only those that do
    # not in its first rows are checked over all of them (a strided read of
    # their columns), which on a convolutional layer skips nearly all of the
    # work: 3.0 ms against 0.24 ms for the 2.8 million outputs of a 16-channel
    # 26x26 layer on 256 samples.
    head = units[: max(1, _HEAD_VALUES // units.shape[1])]
    quiet = np.flatnonzero(np.all(head <= 0.0, axis=0))  # dead so far
    if quiet.size:
        quiet = quiet[np.all(units[:, quiet] <= 0.0, axis=0)]
    return quiet.size / units.shape[1]


def sample_stride(shape, most):
    """The stride of an even sample of at most `most` outputs of `shape`.

    Every `stride`-th output of the flattened outputs, with the stride prime
    to the number of units (the last axis), so that the sample holds every
    unit's outputs alike. A stride that shares a factor with it picks some
    units only: 16 on a 64-channel layer would sample channels 0, 16, 32 and
    48, and the histogram would show four channels of 64.

    >>> sample_stride((1024, 64), 8192)  # 8 shares a factor with 64
    9
    >>> sample_stride((100, 10), 8192)  # all of them
    1

    Args:
        shape: the outputs' shape, units last.
        most: the largest sample.
    """
    size = math.prod(shape)
    units = shape[-1] if len(shape) >= 2 else 1
    stride = max(1, -(-size // most))  # ceil: at most `most` of them
    while math.gcd(stride, units) != 1:
        stride += 1
    return stride


def histogram(sample, bins):
    """`np.histogram(sample, bins)` of finite float64 values, faster.

    The same counts and edges (from the minimum to the maximum in `bins`
    equal buckets, the last one closed). Most values are put in their bucket
    by one scaling and one `np.bincount`; only those that land within
    rounding of an edge are placed against the edges themselves, which
    `np.histogram` does for every value (0.26 ms against 0.15 ms for the
    32,768 outputs of a 128-unit layer on 256 samples on the benchmark
    machine; `ActivationMonitor` histograms every probed layer each epoch).

    >>> counts, edges = histogram(np.array([0.0, 0.5, 1.0, 1.0]), 2)
    >>> counts.tolist(), edges.tolist()
    ([1, 3], [0.0, 0.5, 1.0])

    Args:
        sample: a 1-D float64 array of finite values.
        bins: the number of equal buckets.

    Returns:
        `(counts, edges)`: `bins` counts and `bins + 1` edges.

    Raises:
        ValueError: the range is too narrow for `bins` distinct edges (as
            `np.histogram`).
    """
    if sample.size == 0:
        return np.zeros(bins, "int64"), np.linspace(0.0, 1.0, bins + 1)
    low, high = float(sample.min()), float(sample.max())
    if low == high:  # np.histogram's range for one repeated value
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    if np.any(edges[:-1] >= edges[1:]):
        raise ValueError(
            f"Too many bins for data range. Cannot create {bins} "
            "finite-sized bins.")
    scale = bins / (high - low)
    position = (sample - low) * scale
    index = position.astype(np.intp)
    # Within rounding of an interior edge, in buckets (the edges' own
    # rounding, relative to the largest magnitude, and the scaling's); the
    # minimum (a ReLU's zeros) and the maximum sit on the outer edges.
    slack = 64 * np.finfo("float64").eps * (
        bins + max(abs(low), abs(high)) * scale)
    position -= index
    near = np.flatnonzero(
        ((position <= slack) & (index > 0)) | (position >= 1.0 - slack))
    if near.size:
        index[near] = np.searchsorted(edges, sample[near], side="right") - 1
    np.minimum(index, bins - 1, out=index)  # the maximum: the last bucket
    return np.bincount(index, minlength=bins), edges


def mean_and_std(values, chunk=65536):
    """`(mean, std)` of `values` (1-D), in float64, as `np.mean` and `np.std`.

    The deviations from the mean are squared and summed a chunk at a time,
    in one reused float64 buffer: `np.std(values, dtype="float64")` makes a
    float64 copy of all of them and passes over it three times, 10 ms for
    the 2.8 million outputs of a 16-channel 26x26 layer on 256 samples on
    the benchmark machine, against 6 ms here (`ActivationMonitor` measures
    every probed layer each epoch). The same figures to about 1e-15.

    >>> mean_and_std(np.array([1.0, 2.0, 3.0, 4.0]))
    (2.5, 1.118033988749895)

    Args:
        values: a 1-D array of floats.
        chunk: the values squared at a time.
    """
    if values.size == 0:  # NaN, with NumPy's own warnings
        return (float(np.mean(values, dtype="float64")),
                float(np.std(values, dtype="float64")))
    mean = np.mean(values, dtype="float64")
    buffer = np.empty(min(chunk, values.size), "float64")
    squares = 0.0
    for start in range(0, values.size, chunk):
        part = values[start:start + chunk]
        deviations = buffer[:part.size]
        np.subtract(part, mean, out=deviations)
        # not `np.dot`: its BLAS threads would spin on after it and slow a
        # PyTorch step down (a probe of `mlp128` took 1.4x as long)
        np.square(deviations, out=deviations)
        squares += float(deviations.sum())
    return float(mean), math.sqrt(squares / values.size)


def activation_stats(values, kind, tolerance=0.05, bins=30,
                     histogram_sample=65536):
    """Mean, std, histogram and, where they apply, saturated/dead fractions.

    Every statistic uses all values, except the histogram, which is drawn
    from an evenly strided sample of at most `histogram_sample` values (a
    conv layer on a probe batch easily has millions), every unit's alike
    (`sample_stride`).

    >>> import numpy as np
    >>> from keras_trainopt.diagnostics import activation_stats
    >>> outputs = np.tanh(np.array([[-9.0, 0.1], [8.0, -0.2]]))
    >>> activation_stats(outputs, "tanh")["saturated_fraction"]
    0.5
    >>> activation_stats(np.maximum(outputs, 0), "relu")["dead_fraction"]
    0.0

    A tanh unit is saturated when `|a| > 1 - tolerance`, a sigmoid unit when
    `a < tolerance` or `a > 1 - tolerance`; a ReLU output counts as dead
    when it is exactly 0.

    Args:
        values: a layer's outputs on a probe batch (any shape).
        kind: "tanh", "sigmoid", "relu" or anything else (no fractions).
        tolerance: distance from the asymptote that counts as saturated.
        bins: histogram buckets.
        histogram_sample: most values drawn into the histogram.

    Reference: cs231n, "Neural Networks Part 2" (saturated sigmoid/tanh
    units kill gradients; dead ReLUs) and "Part 3" (activation histograms).
    """
    values = validation.check_floats("values", values, float64=False)
    if kind is not None and not isinstance(kind, str):
        raise TypeError(
            f"`kind` must be an activation name or None. Received: kind={kind!r}"
        )
    tolerance = validation.check_real("tolerance", tolerance, low=0.0,
                                      high=0.5, high_open=True)
    bins = validation.check_int("bins", bins, low=1, high=MAX_BINS)
    histogram_sample = validation.check_int("histogram_sample",
                                            histogram_sample, low=1)
    flat = values.ravel()
    stride = sample_stride(values.shape, histogram_sample)
    sample = flat[::stride].astype("float64")  # float16: too few edges
    # NaN or inf (a diverged layer) would leave the histogram no range
    finite = np.isfinite(sample)
    if not finite.all():
        sample = sample[finite]
    try:
        counts, edges = histogram(sample, bins)
    except ValueError:  # a range too narrow for `bins` distinct edges
        counts = np.array([sample.size])
        edges = np.array([sample.min(), sample.max()])
    mean, std = mean_and_std(flat)
    return {
        "mean": mean,
        "std": std,
        "histogram": (counts, edges),
        "saturated_fraction": saturated_fraction(values, kind, tolerance),
        "dead_fraction": dead_fraction(values, kind),
    }
