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


# -- every unit in the histogram's sample; dead units found fast ---------------


def test_the_histogram_shows_every_channel_of_a_large_layer():
    # before: a stride of 16 on a 64-channel layer sampled channels 0, 16, 32
    # and 48 only, so the histogram ended at 48 and lost 60 channels
    channel = np.arange(64, dtype="float32")
    values = np.broadcast_to(channel, (64, 16, 16, 64))  # 1,048,576 outputs
    counts, edges = activation_stats(values, "linear")["histogram"]
    assert edges[0] == 0.0 and edges[-1] == 63.0
    want, _ = np.histogram(values.ravel(), edges)
    np.testing.assert_allclose(counts / counts.sum(), want / want.sum(),
                               atol=0.002)
    assert counts.sum() <= 65536


@pytest.mark.parametrize("shape, most", [
    ((1024, 64), 8192), ((64, 16, 16, 64), 65536), ((256, 26, 26, 16), 65536),
    ((300, 30), 1000), ((7, 5, 210), 100), ((50,), 7), ((12, 6), 72),
])
def test_the_sample_holds_every_unit(shape, most):
    from keras_trainopt.diagnostics.activations import sample_stride

    stride = sample_stride(shape, most)
    picked = np.arange(int(np.prod(shape)))[::stride]
    units = shape[-1] if len(shape) > 1 else 1
    assert picked.size <= most
    # every unit, or as many as the sample has room for: none twice first
    assert len(np.unique(picked % units)) == min(units, picked.size)
    # no larger than it needs to be: the smallest stride that keeps the
    # sample within `most`, or one of the next few up
    smallest = -(-int(np.prod(shape)) // most)
    assert smallest <= stride < smallest + units


def _dead_reference(values):
    values = np.asarray(values)
    if values.ndim < 2:
        values = values.reshape(-1, 1)
    return float(np.mean(np.all(values <= 0.0, axis=tuple(range(values.ndim - 1)))))


def _relu_layers():
    rng = np.random.default_rng(3)
    conv = np.maximum(rng.normal(size=(256, 13, 13, 16)), 0.0).astype("float32")
    conv[..., [2, 9]] = 0.0  # dead
    conv[..., 5] = 0.0
    conv[-1, -1, -1, 5] = 0.5  # fires once, on the batch's last input
    dense = np.maximum(rng.normal(size=(512, 300)) - 2.5, 0.0)  # sparse
    with_nan = np.zeros((70_000, 3))
    with_nan[-1, 1] = np.nan  # not <= 0: alive, as np.all says
    yield conv
    yield dense
    yield with_nan
    yield np.zeros(5)
    yield np.array([0.0, 0.0, 1e-30])
    yield np.zeros((0, 4))


@pytest.mark.parametrize("values", list(_relu_layers()),
                         ids=lambda v: "x".join(map(str, v.shape)))
def test_dead_fraction_is_that_of_every_output(values):
    got = activation_stats(values, "relu")["dead_fraction"]
    assert got == _dead_reference(values)


def _moment_samples():
    rng = np.random.default_rng(4)
    yield rng.normal(size=1000) * 3 + 1e4  # far from zero: cancellation
    yield np.maximum(rng.normal(size=(64, 50)), 0).astype("float32").ravel()
    yield rng.normal(size=333).astype("float16")
    yield rng.integers(-5, 5, size=40)
    yield np.array([True, False, True])
    yield np.array([2.5])
    yield np.array([1.0, np.nan, 2.0])
    yield np.array([1.0, np.inf])
    yield np.array([-np.inf, np.inf])


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_mean_and_std_are_numpys(chunk):
    from keras_trainopt.diagnostics.activations import mean_and_std

    for values in _moment_samples():
        mean, std = mean_and_std(values, chunk=chunk)
        want_mean = np.mean(values, dtype="float64")
        want_std = np.std(values, dtype="float64")
        np.testing.assert_allclose(mean, want_mean, rtol=1e-12)
        np.testing.assert_allclose(std, want_std, rtol=1e-9)
    with pytest.warns(RuntimeWarning):  # NumPy's, for no values
        assert np.isnan(mean_and_std(np.zeros(0))).all()
