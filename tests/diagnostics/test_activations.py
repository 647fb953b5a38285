import numpy as np
import pytest

from keras_trainopt.diagnostics import activation_stats


def test_fractions():
    outputs = np.tanh(np.array([[-9.0, 0.1], [8.0, -0.2]]))
    assert activation_stats(outputs, "tanh")["saturated_fraction"] == 0.5
    assert activation_stats(np.maximum(outputs, 0), "relu")["dead_fraction"] == 0.0


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_non_finite_activations_get_a_histogram():
    # before: ValueError "autodetected range of [nan, nan] is not finite",
    # so ActivationMonitor crashed on a diverged layer
    stats = activation_stats(np.array([[np.nan, 1.0], [0.5, np.inf]]), "relu")
    counts, edges = stats["histogram"]
    assert counts.sum() == 2 and np.all(np.isfinite(edges))


@pytest.mark.parametrize("values", [np.full(4, 1e4, "float16"), np.array([1e17])])
def test_a_range_too_narrow_for_the_bins_gets_a_histogram(values):
    # before: ValueError "Too many bins for data range" (float16 outputs of
    # a constant unit, or huge values)
    counts, edges = activation_stats(values, "linear")["histogram"]
    assert counts.sum() == values.size and np.all(np.isfinite(edges))


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(values="abc"), "values"), (dict(kind=["relu"]), "kind"),
     (dict(tolerance=0.7), "tolerance"), (dict(bins=0), "bins"),
     (dict(histogram_sample="x"), "histogram_sample")],
)
def test_arguments_are_checked(kwargs, name):
    # before: "unsupported operand type(s) for //: 'int' and 'str'" & co.
    kwargs = dict(values=np.ones(3), kind="relu") | kwargs
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        activation_stats(**kwargs)


def test_absurd_bin_counts_are_refused():
    # before: bins=10**30 reached NumPy, which raised IndexError
    with pytest.raises(ValueError, match=r"`bins` must be <= "):
        activation_stats(np.ones(3), "relu", bins=10**30)


# -- the histogram: np.histogram's, faster (issue 21) ---------------------------


def _samples():
    """Values on and beside bucket edges, as layers give them."""
    rng = np.random.default_rng(0)
    normal = rng.normal(size=40_000)
    yield np.maximum(normal, 0.0)  # a ReLU: half at the minimum
    yield np.tanh(3 * normal)
    yield np.round(normal, 1)  # on the edges of tenths
    yield rng.integers(-3, 7, size=5_000) * 0.3  # multiples of a step
    yield np.round(normal, 2) + 1e6  # a large offset: edges round coarsely
    yield normal.astype("float16").astype("float64")
    yield np.array([2.5])
    yield np.full(7, -1.25)
    yield np.array([0.0, 1.0])


@pytest.mark.parametrize("bins", [1, 7, 30, 64])
def test_histogram_is_numpys(bins):
    from keras_trainopt.diagnostics.activations import histogram

    for sample in _samples():
        counts, edges = histogram(sample, bins)
        want_counts, want_edges = np.histogram(sample, bins)
        np.testing.assert_array_equal(edges, want_edges)
        np.testing.assert_array_equal(counts, want_counts)


def test_the_histogram_of_a_layer_is_numpys_of_its_finite_values():
    values = np.maximum(np.random.default_rng(1).normal(size=(64, 40)), 0)
    values[3, 5], values[7, 1] = np.nan, np.inf
    counts, edges = activation_stats(values, "relu")["histogram"]
    finite = values[np.isfinite(values)]
    want_counts, want_edges = np.histogram(finite, 30)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
