import keras
import numpy as np
import pytest

from keras_trainopt import ActivationMonitor
from tests import tb

rng = np.random.default_rng(0)
X = rng.normal(size=(128, 10)).astype("float32")
Y = rng.normal(size=(128, 1)).astype("float32")


def fit(model, monitor, epochs=1):
    model.compile(keras.optimizers.SGD(1e-3), loss="mse")
    model.fit(X, Y, epochs=epochs, callbacks=[monitor], verbose=0)
    return monitor


def test_large_tanh_weights_saturate(tmp_path):
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(64, activation="tanh", name="tanh",
                           kernel_initializer=keras.initializers.RandomNormal(
                               stddev=10.0)),
        keras.layers.Dense(1, name="out"),
    ])
    monitor = fit(model, ActivationMonitor(X, str(tmp_path), verbose=0))
    stats = monitor.stats["tanh"]
    # Independent reference: the probe model's outputs through NumPy.
    kernel, bias = model.get_layer("tanh").get_weights()
    outputs = np.tanh(X @ kernel + bias)
    expected = np.mean(np.abs(outputs) >= 0.9)
    assert stats["saturated_fraction"] == pytest.approx(expected, abs=1e-6)
    assert stats["saturated_fraction"] > 0.9
    assert stats["mean"] == pytest.approx(outputs.mean(), abs=1e-5)
    assert stats["std"] == pytest.approx(outputs.std(), abs=1e-5)
    assert stats["dead_fraction"] is None
    assert monitor.stats["out"]["saturated_fraction"] is None
    written = tb.scalars(str(tmp_path / "monitors"),
                         "activations/tanh/saturated_fraction")
    assert written == [(0, pytest.approx(expected, abs=1e-6))]
    assert "activations/tanh/histogram" in tb.tags(str(tmp_path / "monitors"))


def test_negative_bias_kills_relus_in_a_functional_model():
    inputs = keras.Input((10,))
    hidden = keras.layers.Dense(
        50, activation="relu", name="relu",
        bias_initializer=keras.initializers.Constant(-100.0))(inputs)
    sigmoid = keras.layers.Dense(8, activation="sigmoid", name="sig")(inputs)
    outputs = keras.layers.Dense(1, name="out")(
        keras.layers.Concatenate(name="cat")([hidden, sigmoid]))
    monitor = fit(keras.Model(inputs, outputs),
                  ActivationMonitor(X, layers=["relu", "sig"], verbose=0))
    assert sorted(monitor.stats) == ["relu", "sig"]
    assert monitor.stats["relu"]["dead_fraction"] > 0.9
    sig = monitor.stats["sig"]
    assert 0.0 <= sig["saturated_fraction"] < 0.5 and sig["dead_fraction"] is None


def test_dead_fraction_counts_units_dead_for_the_whole_batch():
    from keras_trainopt.diagnostics.activations import dead_fraction

    values = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_fraction(values, "relu") == pytest.approx(1 / 3)
    assert dead_fraction(values, "tanh") is None


def test_every_epochs_and_verbose_warning(capsys):
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(20, activation="relu", name="hidden",
                           bias_initializer=keras.initializers.Constant(-50.0)),
        keras.layers.Dense(1),
    ])
    probes = []

    class Count(ActivationMonitor):
        def probe(self, step=0):
            probes.append(step)
            return super().probe(step)

    fit(model, Count(X, every_epochs=2, verbose=1), epochs=5)
    assert probes == [1, 3]
    assert "units of layer hidden are dead" in capsys.readouterr().out


def test_subclassed_model_cannot_be_probed():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="cannot probe Net"):
        fit(Net(), ActivationMonitor(X, verbose=0))


def test_unknown_layer_names_are_listed():
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1,
                                                                     name="d")])
    with pytest.raises(ValueError, match=r"no layer named \['nope'\].*\['d'\]"):
        fit(model, ActivationMonitor(X, layers=["nope"], verbose=0))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(x=None), TypeError, "x"),
        (dict(every_epochs=0), ValueError, "every_epochs"),
        (dict(layers="dense"), TypeError, "layers"),
        (dict(saturation_tolerance=0.5), ValueError, "saturation_tolerance"),
        (dict(warn_fraction=0.0), ValueError, "warn_fraction"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    kwargs = {"x": X, **kwargs}
    with pytest.raises(error, match=f"`{name}`"):
        ActivationMonitor(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("layers", [1, {"dense": 1}])
def test_layers_that_are_not_a_list_are_refused(layers):
    # before: TypeError "'int' object is not iterable", naming nothing
    with pytest.raises(TypeError, match=r"`layers` must be a list"):
        ActivationMonitor(np.ones((2, 4)), layers=layers)


@pytest.mark.parametrize("x", ["abc", 5, [[1.0, 2.0]]])
def test_x_must_be_a_batch_of_arrays(x):
    # before: accepted, and the probe failed at the end of the first epoch
    with pytest.raises(TypeError, match=r"`x` must be a batch of inputs"):
        ActivationMonitor(x)


@pytest.mark.parametrize("log_dir", [5, "", b"logs"])
def test_log_dir_is_checked_when_built(log_dir):
    # before: accepted; `fit` then failed in os.fspath (5), or "" wrote the
    # event files into the working folder
    with pytest.raises((TypeError, ValueError), match=r"`log_dir` must be"):
        ActivationMonitor(np.ones((2, 4)), log_dir=log_dir)


def test_empty_layers_is_refused():
    # before: accepted; `fit` then failed in Keras ("`outputs` argument
    # cannot be empty"), naming no argument
    with pytest.raises(ValueError, match=r"`layers` must name at least one"):
        ActivationMonitor(np.ones((2, 4)), layers=[])


def test_unknown_layer_names_name_the_argument():
    # before: the message did not name `layers`
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1, name="d")])
    with pytest.raises(ValueError, match=r"`layers` lists no layer named"):
        fit(model, ActivationMonitor(X, layers=["nope"], verbose=0))
