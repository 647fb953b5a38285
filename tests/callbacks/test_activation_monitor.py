import keras
import numpy as np
import pytest

from keras_trainopt import ActivationMonitor
from tests import tb
from tests.callbacks.helpers import Net

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


class Counted(ActivationMonitor):
    """Records the epoch of every probe."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.probes = []

    def probe(self, step=0):
        self.probes.append(step)
        return super().probe(step)


def _relu_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="out"),
    ])


def test_max_overhead_skips_due_probes_and_probes_the_last_epoch(tmp_path):
    # A share of 1e-6 lets a probe of a millisecond or more run once every
    # quarter of an hour: after the traced first probe and the first timed
    # one, every due probe is skipped but the last epoch's.
    model = _relu_model()
    monitor = fit(model, Counted(X, str(tmp_path), verbose=0,
                                 max_overhead=1e-6), epochs=6)
    assert monitor.probes == [0, 1, 5]
    written = tb.scalars(str(tmp_path / "monitors"),
                         "activations/hidden/dead_fraction")
    assert [step for step, _ in written] == [0, 1, 5]
    # `stats` ends on the final weights: the hidden layer's outputs in NumPy
    kernel, bias = model.get_layer("hidden").get_weights()
    outputs = np.maximum(X @ kernel + bias, 0.0)
    assert monitor.stats["hidden"]["mean"] == pytest.approx(
        outputs.mean(), abs=1e-5)
    assert not monitor.get_state()["pending"]


def test_max_overhead_none_probes_every_due_epoch():
    monitor = fit(_relu_model(), Counted(X, verbose=0), epochs=4)
    assert monitor.probes == [0, 1, 2, 3]


def test_a_skipped_probe_runs_when_training_stops_early():
    class StopAt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 3:
                self.model.stop_training = True

    for stop_first in (True, False):  # before the monitor, or after it
        model = _relu_model()
        model.compile(keras.optimizers.SGD(1e-3), loss="mse")
        monitor = Counted(X, verbose=0, max_overhead=1e-6)
        callbacks = [StopAt(), monitor] if stop_first else [monitor, StopAt()]
        model.fit(X, Y, epochs=9, callbacks=callbacks, verbose=0)
        # seen at its epoch's end, or at train end, as epoch 3 either way
        assert monitor.probes == [0, 1, 3]


def test_a_skipped_probe_travels_in_the_state():
    """A fit resumed after a skipped probe still ends on a probe."""
    for pending, probes in ((True, [3]), (False, [])):
        model = _relu_model()
        model.compile(keras.optimizers.SGD(1e-3), loss="mse")
        monitor = Counted(X, every_epochs=5, verbose=0, max_overhead=0.01)
        monitor.set_state({"stats": {}, "pending": pending})
        model.fit(X, Y, initial_epoch=2, epochs=4, callbacks=[monitor],
                  verbose=0)  # no due epoch in 2..3
        assert monitor.probes == probes
    # resumed after its last epoch: no epoch runs, the probe at train end
    model = _relu_model()
    model.compile(keras.optimizers.SGD(1e-3), loss="mse")
    monitor = Counted(X, verbose=0, max_overhead=0.01)
    monitor.set_state({"stats": {}, "pending": True})
    model.fit(X, Y, initial_epoch=4, epochs=4, callbacks=[monitor], verbose=0)
    assert monitor.probes == [3]


def test_subclassed_model_cannot_be_probed():
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
        (dict(max_overhead=0.0), ValueError, "max_overhead"),
        (dict(max_overhead=1.5), ValueError, "max_overhead"),
        (dict(max_overhead="1%"), TypeError, "max_overhead"),
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


# -- nested sub-models (issue 19) ----------------------------------------------


def _relu_dense(units, name, bias=0.0):
    return keras.layers.Dense(
        units, activation="relu", name=name,
        bias_initializer=keras.initializers.Constant(bias))


def _nested_model():
    """outer(functional) -> block(functional) -> inner(Sequential)."""
    inner = keras.Sequential([
        keras.Input((6,)),
        _relu_dense(5, "inner_relu", bias=-0.5),
        keras.layers.Dense(4, name="inner_linear"),
    ], name="inner")
    block_in = keras.Input((10,))
    hidden = keras.layers.Dense(6, activation="tanh", name="block_tanh")(
        block_in)
    block = keras.Model(block_in, inner(hidden), name="block")
    inputs = keras.Input((10,))
    # the transfer-learning idiom: the backbone called with training=False
    features = block(inputs, training=False)
    outputs = keras.layers.Dense(1, name="head")(features)
    return keras.Model(inputs, outputs, name="outer")


def _numpy_forward(model, x):
    """The nested model's layer outputs, written out in NumPy."""
    w = {layer.name: layer.get_weights() for layer in
         [model.get_layer("head"),
          model.get_layer("block").get_layer("block_tanh"),
          model.get_layer("block").get_layer("inner").get_layer("inner_relu"),
          model.get_layer("block").get_layer("inner").get_layer(
              "inner_linear")]}
    tanh = np.tanh(x @ w["block_tanh"][0] + w["block_tanh"][1])
    relu = np.maximum(tanh @ w["inner_relu"][0] + w["inner_relu"][1], 0.0)
    linear = relu @ w["inner_linear"][0] + w["inner_linear"][1]
    head = linear @ w["head"][0] + w["head"][1]
    return {"block/block_tanh": tanh, "block/inner/inner_relu": relu,
            "block/inner/inner_linear": linear, "block": linear,
            "block/inner": linear, "head": head}


def test_nested_functional_and_sequential_sub_models_are_probed_by_path():
    model = _nested_model()
    monitor = fit(model, ActivationMonitor(X, verbose=0))
    # default: every top-level layer, the activation layers inside
    assert sorted(monitor.stats) == [
        "block", "block/block_tanh", "block/inner/inner_relu", "head"]
    expected = _numpy_forward(model, X.astype("float64"))
    for name, stats in monitor.stats.items():
        assert stats["mean"] == pytest.approx(expected[name].mean(), abs=1e-4)
        assert stats["std"] == pytest.approx(expected[name].std(), abs=1e-4)
    relu = expected["block/inner/inner_relu"]
    assert monitor.stats["block/inner/inner_relu"]["dead_fraction"] == (
        pytest.approx(np.mean(np.all(relu <= 0, axis=0))))
    tanh = expected["block/block_tanh"]
    assert monitor.stats["block/block_tanh"]["saturated_fraction"] == (
        pytest.approx(np.mean(np.abs(tanh) >= 0.9), abs=1e-6))


def test_layers_takes_nested_paths_and_all(tmp_path):
    model = _nested_model()
    monitor = fit(model, ActivationMonitor(
        X, str(tmp_path), layers=["block/inner/inner_linear", "head"],
        verbose=0))
    assert sorted(monitor.stats) == ["block/inner/inner_linear", "head"]
    expected = _numpy_forward(model, X.astype("float64"))
    assert monitor.stats["block/inner/inner_linear"]["mean"] == pytest.approx(
        expected["block/inner/inner_linear"].mean(), abs=1e-4)
    assert tb.scalars(str(tmp_path / "monitors"),
                      "activations/block/inner/inner_linear/mean") == [
        (0, pytest.approx(expected["block/inner/inner_linear"].mean(),
                          abs=1e-4))]
    every = fit(_nested_model(), ActivationMonitor(X, layers="all",
                                                    verbose=0))
    assert sorted(every.stats) == sorted(expected)


@pytest.fixture(scope="module")
def mobilenet():
    # built once: the first build on JAX takes a while
    return keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None,
        pooling="avg")


@pytest.mark.slow  # a keras.applications backbone, built and traced
def test_a_keras_applications_backbone_is_probed_in_one_pass(mobilenet):
    base = mobilenet
    base.trainable = False  # transfer learning, phase 1 (and a fast test)
    model = keras.Sequential([keras.Input((32, 32, 3)), base,
                              keras.layers.Dense(3, name="head")])
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    model.compile("sgd", "mse")
    monitor = ActivationMonitor(x, verbose=0)
    calls = []
    conv_call = keras.layers.Conv2D.call

    def counting_call(self, *args, **kwargs):
        calls.append(self.name)
        return conv_call(self, *args, **kwargs)

    keras.layers.Conv2D.call = counting_call
    try:
        model.fit(x, np.zeros((8, 3)), epochs=1, verbose=0,
                  callbacks=[monitor])
        calls.clear()
        monitor.probe()
    finally:
        keras.layers.Conv2D.call = conv_call
    activation_layers = [
        layer for layer in base.layers
        if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU))]
    assert len(activation_layers) > 30
    assert sorted(monitor.stats) == sorted(
        [base.name, "head"]
        + [f"{base.name}/{layer.name}" for layer in activation_layers])
    # one forward pass for all: each conv runs (or is traced) at most once
    n_conv = sum(isinstance(layer, keras.layers.Conv2D)
                 for layer in base.layers)
    assert len(calls) <= n_conv
    # against the backbone's own feature model, on the same input
    relu = next(layer for layer in activation_layers
                if isinstance(layer, keras.layers.ReLU))
    reference = keras.Model(base.inputs, relu.output).predict_on_batch(x)
    stats = monitor.stats[f"{base.name}/{relu.name}"]
    assert stats["mean"] == pytest.approx(float(reference.mean()), rel=1e-4,
                                          abs=1e-5)
    assert stats["dead_fraction"] == pytest.approx(
        float(np.mean(np.all(reference <= 0, axis=(0, 1, 2)))))


def test_unknown_nested_name_suggests_close_paths(mobilenet):
    base = mobilenet
    model = keras.Sequential([keras.Input((32, 32, 3)), base])
    model.compile("sgd", "mse")
    x = np.zeros((2, 32, 32, 3), "float32")
    monitor = ActivationMonitor(x, layers=["Conv"], verbose=0)
    with pytest.raises(ValueError, match=r"no layer named \['Conv'\].*"
                       rf"{base.name}/conv.*'<sub-model>/<layer>'"):
        model.fit(x, np.zeros((2, 576)), epochs=1, verbose=0,
                  callbacks=[monitor])


def test_subclassed_model_is_probed_through_model_argument():
    backbone = _nested_model().get_layer("block")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.head = keras.layers.Dense(1)

        def call(self, x):
            return self.head(self.backbone(x))

    net = Net()
    monitor = fit(net, ActivationMonitor(X, model=backbone, verbose=0))
    assert sorted(monitor.stats) == ["block_tanh", "inner",
                                     "inner/inner_relu"]
    kernel, bias = backbone.get_layer("block_tanh").get_weights()
    assert monitor.stats["block_tanh"]["mean"] == pytest.approx(
        np.tanh(X @ kernel + bias).mean(), abs=1e-5)


def test_dict_inputs_of_a_multi_input_model():
    a, b = keras.Input((10,), name="a"), keras.Input((3,), name="b")
    merged = keras.layers.Concatenate(name="cat")([b, a])
    outputs = keras.layers.Dense(1, activation="sigmoid", name="sig")(merged)
    model = keras.Model({"a": a, "b": b}, outputs)
    model.compile("sgd", "mse")
    extra = rng.normal(size=(128, 3)).astype("float32")
    monitor = ActivationMonitor({"b": extra, "a": X}, layers=["sig"],
                                verbose=0)
    model.fit({"a": X, "b": extra}, Y, epochs=1, verbose=0,
              callbacks=[monitor])
    kernel, bias = model.get_layer("sig").get_weights()
    expected = 1 / (1 + np.exp(-(np.concatenate([extra, X], 1) @ kernel
                                 + bias)))
    assert monitor.stats["sig"]["mean"] == pytest.approx(expected.mean(),
                                                         abs=1e-5)


def test_model_argument_must_be_a_graph_model():
    with pytest.raises(TypeError, match=r"`model` must be .*Received: "
                       r"model=3"):
        ActivationMonitor(X, model=3)


def test_frozen_then_unfrozen_backbone_across_two_fits():
    model = _nested_model()
    monitor = ActivationMonitor(X, verbose=0)
    model.get_layer("block").trainable = False
    fit(model, monitor)
    frozen = model.get_layer("block").get_weights()
    model.get_layer("block").trainable = True
    model.compile(keras.optimizers.SGD(0.1), loss="mse")  # phase 2
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[monitor])
    assert not np.allclose(frozen[0], model.get_layer("block").get_weights()[0])
    expected = _numpy_forward(model, X.astype("float64"))  # trained weights
    for name, stats in monitor.stats.items():
        assert stats["mean"] == pytest.approx(expected[name].mean(), abs=1e-4)


def test_sequential_without_input_is_probed():
    model = keras.Sequential([
        keras.layers.Dense(6, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="out")])
    monitor = fit(model, ActivationMonitor(X, verbose=0))
    kernel, bias = model.get_layer("hidden").get_weights()
    hidden = np.maximum(X @ kernel + bias, 0.0)
    assert sorted(monitor.stats) == ["hidden", "out"]
    assert monitor.stats["hidden"]["mean"] == pytest.approx(hidden.mean(),
                                                            abs=1e-5)


def test_layers_as_an_array_is_refused_by_name():
    with pytest.raises(TypeError, match=r"`layers` must be a list"):
        ActivationMonitor(X, layers=np.array(["hidden"]))
