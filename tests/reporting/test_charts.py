"""`charts.smooth`: the batch-loss chart's smoothing, against its formula."""

import math

import numpy as np

from keras_trainopt.reporting import charts


def debiased_ema(values, weight):
    """TensorBoard's smoothing, written out: finite values only, debiased."""
    out, average, count = [], 0.0, 0
    for value in values:
        if not math.isfinite(value):
            out.append(math.nan)
            continue
        average = weight * average + (1 - weight) * value
        count += 1
        out.append(average / (1 - weight**count))
    return out


def test_smooth_is_the_debiased_average_and_skips_non_finite_values():
    values = np.random.default_rng(0).normal(size=200).cumsum()
    values[[0, 7, 50, 199]] = [np.nan, np.inf, -np.inf, np.nan]
    for window in (3, 10, 50):
        weight = 1 - 2 / (window + 1)
        got = charts.smooth(values, weight)
        want = np.array(debiased_ema(values, weight))
        assert got.shape == values.shape
        np.testing.assert_array_equal(np.isnan(got), ~np.isfinite(values))
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    # The first finite value is its own average (debiased from the start).
    assert charts.smooth(np.array([np.nan, 4.0, 2.0]), 0.5)[1] == 4.0
