"""`recompute_batchnorm_statistics` on the models people train (issue 19).

Nested functional sub-models, a `keras.applications` backbone, subclassed
models, repeating datasets and generators. Every statistic is compared to
NumPy statistics of the layer's real inputs, computed here independently.
"""

import keras
import numpy as np
import pytest

from keras_trainopt import recompute_batchnorm_statistics


def _f64(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable.value), "float64")


def _dense(layer, h):
    kernel, bias = (_f64(w) for w in (layer.kernel, layer.bias))
    return h @ kernel + bias


def _bn(layer, h):
    """A BatchNorm layer in inference mode, with its current statistics."""
    gamma, beta = _f64(layer.gamma), _f64(layer.beta)
    mean, var = _f64(layer.moving_mean), _f64(layer.moving_variance)
    return gamma * (h - mean) / np.sqrt(var + layer.epsilon) + beta


def _randomize_bn(model):
    rng = np.random.default_rng(7)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.uniform(-0.3, 0.3, n).astype("float32"))


def _assert_stats(layer, h):
    np.testing.assert_allclose(_f64(layer.moving_mean), h.mean(axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_f64(layer.moving_variance), h.var(axis=0),
                               rtol=1e-4, atol=1e-5)


def nested_model():
    """Dense -> [Dense -> BN -> Dense -> BN] (a sub-model) -> BN -> Dense."""
    keras.utils.set_random_seed(5)
    inner_in = keras.Input((4,))
    h = keras.layers.Dense(6, name="in_d1")(inner_in)
    h = keras.layers.BatchNormalization(name="in_bn1")(h)
    h = keras.layers.Dense(5, name="in_d2")(h)
    h = keras.layers.BatchNormalization(name="in_bn2")(h)
    inner = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, name="d0")(inputs)
    h = inner(h)
    h = keras.layers.BatchNormalization(name="top_bn")(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inputs, outputs)
    _randomize_bn(model)
    return model


def nested_reference(model, x):
    """Checks every BatchNorm of `nested_model` against a NumPy pass."""
    inner = model.get_layer("backbone")
    h = _dense(model.get_layer("d0"), x.astype("float64"))
    h = _dense(inner.get_layer("in_d1"), h)
    _assert_stats(inner.get_layer("in_bn1"), h)
    h = _dense(inner.get_layer("in_d2"), _bn(inner.get_layer("in_bn1"), h))
    _assert_stats(inner.get_layer("in_bn2"), h)
    h = _bn(inner.get_layer("in_bn2"), h)
    _assert_stats(model.get_layer("top_bn"), h)


@pytest.mark.parametrize("batch_size", [7, 64])
def test_nested_functional_sub_model(batch_size):
    model = nested_model()
    x = np.random.default_rng(0).normal(size=(30, 3)).astype("float32")
    recompute_batchnorm_statistics(model, x, batch_size=batch_size)
    nested_reference(model, x)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = keras.layers.Dense(6)
        self.bn1 = keras.layers.BatchNormalization()
        self.d2 = keras.layers.Dense(3)
        self.bn2 = keras.layers.BatchNormalization()

    def call(self, x, training=None):
        h = self.bn1(self.d1(x), training=training)
        return self.bn2(self.d2(h), training=training)


def subclassed_model():
    keras.utils.set_random_seed(6)
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    _randomize_bn(model)
    return model


def subclassed_reference(model, x):
    h = _dense(model.d1, x.astype("float64"))
    _assert_stats(model.bn1, h)
    _assert_stats(model.bn2, _dense(model.d2, _bn(model.bn1, h)))


def test_subclassed_model():
    # before: AttributeError (no `inputs`) at train end
    model = subclassed_model()
    x = np.random.default_rng(1).normal(size=(25, 4)).astype("float32")
    recompute_batchnorm_statistics(model, x, batch_size=10)
    subclassed_reference(model, x)


def test_a_generator_is_read_once_for_all_layers():
    # before: the second BatchNorm layer's pass found the generator used up
    model = nested_model()
    x = np.random.default_rng(3).normal(size=(20, 3)).astype("float32")
    recompute_batchnorm_statistics(model, (x[i:i + 6] for i in range(0, 20, 6)))
    nested_reference(model, x)


def test_repeating_dataset_needs_steps_and_uses_that_many_batches():
    tf = pytest.importorskip("tensorflow")  # tf.data

    model = nested_model()
    x = np.random.default_rng(4).normal(size=(24, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(5).repeat()
    with pytest.raises(ValueError, match=r"Pass `steps`.*Received: steps=None"):
        recompute_batchnorm_statistics(model, dataset)
    recompute_batchnorm_statistics(model, dataset, steps=3)  # 15 samples
    nested_reference(model, x[:15])


def test_steps_is_checked():
    with pytest.raises(ValueError, match=r"Received: steps=0"):
        recompute_batchnorm_statistics(nested_model(), np.zeros((4, 3)),
                                       steps=0)


def test_skip_frozen_keeps_a_frozen_layer():
    model = nested_model()
    inner = model.get_layer("backbone")
    frozen = inner.get_layer("in_bn1")
    frozen.trainable = False
    before = _f64(frozen.moving_mean), _f64(frozen.moving_variance)
    x = np.random.default_rng(8).normal(size=(12, 3)).astype("float32")
    recompute_batchnorm_statistics(model, x, skip_frozen=True)
    np.testing.assert_array_equal(_f64(frozen.moving_mean), before[0])
    np.testing.assert_array_equal(_f64(frozen.moving_variance), before[1])
    h = _bn(frozen, _dense(inner.get_layer("in_d1"),
                            _dense(model.get_layer("d0"), x.astype("float64"))))
    _assert_stats(inner.get_layer("in_bn2"), _dense(inner.get_layer("in_d2"), h))


def test_a_layer_called_twice_is_refused_by_name():
    bn = keras.layers.BatchNormalization(name="shared_bn")
    inputs = keras.Input((3,))
    outputs = keras.layers.Add()([bn(inputs), bn(inputs * 2.0)])
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="more than once.*'shared_bn'"):
        recompute_batchnorm_statistics(model, np.ones((4, 3)))


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3),
        pooling="avg",
    )
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), backbone, keras.layers.Dense(3)]
    )
    return model, backbone


@pytest.mark.slow  # MobileNetV3Small's graph: 20-30 s
def test_keras_applications_backbone(mobilenet):
    model, backbone = mobilenet
    x = np.random.default_rng(9).normal(size=(12, 32, 32, 3)).astype("float32")
    recompute_batchnorm_statistics(model, x, batch_size=6)
    bns = [layer for layer in backbone.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 34
    for bn in (bns[0], bns[len(bns) // 2], bns[-1]):
        # the layer's real inputs, by a probe model inside the backbone
        probe = keras.Model(backbone.inputs, bn.input)
        h = np.asarray(keras.ops.convert_to_numpy(probe(x, training=False)),
                       "float64").reshape(-1, bn.moving_mean.shape[0])
        np.testing.assert_allclose(_f64(bn.moving_mean), h.mean(axis=0),
                                   rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(_f64(bn.moving_variance), h.var(axis=0),
                                   rtol=1e-3, atol=1e-4)
