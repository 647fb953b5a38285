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
