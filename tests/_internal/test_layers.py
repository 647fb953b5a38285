import keras
import numpy as np
import pytest

from keras_trainopt._internal import layers

rng = np.random.default_rng(0)
X = rng.normal(size=(16, 4)).astype("float32")


def nested():
    inner = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="lin"),
                              keras.layers.ReLU(name="relu")], name="inner")
    inputs = keras.Input((4,))
    hidden = inner(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="outer"), inner


def test_walk_names_nested_layers_by_path_in_graph_order():
    model, _ = nested()
    assert [path for path, _ in layers.walk(model)] == [
        "inner", "inner/lin", "inner/relu", "head"]
    assert layers.default_paths(model) == ["inner", "inner/relu", "head"]


@pytest.mark.parametrize("layer, expected", [
    (keras.layers.Dense(2), False),
    (keras.layers.Dense(2, activation="relu"), True),
    (keras.layers.Conv2D(2, 3, activation="swish"), True),
    (keras.layers.Activation("hard_swish"), True),
    (keras.layers.LeakyReLU(), True),
    (keras.layers.BatchNormalization(), False),
    (keras.layers.Add(), False),
])
def test_is_activation_layer(layer, expected):
    assert layers.is_activation_layer(layer) is expected


def test_recording_matches_numpy_and_adds_no_nodes():
    model, inner = nested()
    probe = layers.RecordingModel(model, ["inner/lin", "inner/relu", "head"])
    lin, relu, head = probe.predict_on_batch(X)
    kernel, bias = inner.get_layer("lin").get_weights()
    expected = X @ kernel + bias
    np.testing.assert_allclose(lin, expected, atol=1e-5)
    np.testing.assert_allclose(relu, np.maximum(expected, 0), atol=1e-5)
    np.testing.assert_allclose(head, model.predict_on_batch(X), atol=1e-6)
    # the model's own graph is untouched: layer.output is still one tensor
    feature = keras.Model(inner.inputs, inner.get_layer("relu").output)
    np.testing.assert_allclose(feature.predict_on_batch(X), relu, atol=1e-6)


def test_a_sequential_built_without_input_is_replayed_as_a_chain():
    model = keras.Sequential([keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(1, name="b")])
    assert model._functional is None  # no graph: the layers in order
    record = {}
    out = layers.run_recording(model, X, {"a"}, record)
    kernel, bias = model.get_layer("a").get_weights()
    a = X @ kernel + bias
    numpy = keras.ops.convert_to_numpy
    np.testing.assert_allclose(numpy(record["a"]), a, atol=1e-5)
    kernel, bias = model.get_layer("b").get_weights()
    np.testing.assert_allclose(numpy(out), a @ kernel + bias, atol=1e-5)


def test_a_shared_layer_records_its_first_call():
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    twice = shared(shared(inputs))
    model = keras.Model(inputs, twice)
    (first,) = layers.RecordingModel(model, ["shared"]).predict_on_batch(X)
    kernel, bias = shared.get_weights()
    np.testing.assert_allclose(first, X @ kernel + bias, atol=1e-5)


def test_only_graph_models_are_walked():
    class Net(keras.Model):
        def call(self, x):
            return x

    assert not layers.is_graph_model(Net())
    assert not layers.is_graph_model(keras.layers.Dense(1))
    assert layers.is_graph_model(keras.Sequential())
