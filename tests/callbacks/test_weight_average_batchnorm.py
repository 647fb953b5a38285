"""`batchnorm_data` of the weight-average callbacks (issue 19, items 2, 3).

Nested and subclassed BatchNorm recomputed for the average at train end,
what cannot work refused at train begin (before the first step, with
nothing left on the optimizer), and repeating datasets bounded by
`batchnorm_steps`. References: NumPy statistics of each layer's inputs.
"""

import keras
import numpy as np
import pytest

from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import StochasticWeightAveraging


def _f64(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable.value), "float64")


def _dense(layer, h):
    return h @ _f64(layer.kernel) + _f64(layer.bias)


def _bn(layer, h):
    mean, var = _f64(layer.moving_mean), _f64(layer.moving_variance)
    return (_f64(layer.gamma) * (h - mean) / np.sqrt(var + layer.epsilon)
            + _f64(layer.beta))


def _assert_stats(layer, h):
    np.testing.assert_allclose(_f64(layer.moving_mean), h.mean(axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_f64(layer.moving_variance), h.var(axis=0),
                               rtol=1e-4, atol=1e-5)


def nested_model():
    keras.utils.set_random_seed(5)
    inner_in = keras.Input((4,))
    h = keras.layers.Dense(6, name="in_d1")(inner_in)
    h = keras.layers.BatchNormalization(name="in_bn1")(h)
    inner = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((3,))
    h = inner(keras.layers.Dense(4, name="d0")(inputs))
    h = keras.layers.BatchNormalization(name="top_bn")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    return model


def nested_reference(model, x):
    inner = model.get_layer("backbone")
    h = _dense(inner.get_layer("in_d1"),
               _dense(model.get_layer("d0"), x.astype("float64")))
    _assert_stats(inner.get_layer("in_bn1"), h)
    _assert_stats(model.get_layer("top_bn"), _bn(inner.get_layer("in_bn1"), h))


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def _no_state_left(model, prefix):
    return not [v for v in model.optimizer.variables
                if v.name.startswith(prefix)]


def test_nested_batchnorm_recomputed_for_the_average():
    # before: refused in on_train_end, the History lost
    x, y = data()
    model = nested_model()
    swa = StochasticWeightAveraging(0, batchnorm_data=x)
    history = model.fit(x, y, batch_size=8, epochs=2, callbacks=[swa],
                        verbose=0)
    assert len(history.history["loss"]) == 2
    for w, a in zip(model.trainable_weights,
                    [a for v, a in zip(model.weights, swa.averaged_weights(),
                                       strict=True)
                     if v.trainable], strict=True):
        np.testing.assert_array_equal(_f64(w), np.asarray(a, "float64"))
    nested_reference(model, x)
    assert _no_state_left(model, "swa")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = keras.layers.Dense(5)
        self.bn = keras.layers.BatchNormalization()
        self.d2 = keras.layers.Dense(1)

    def call(self, x, training=None):
        return self.d2(self.bn(self.d1(x), training=training))


def test_subclassed_model():
    # before: AttributeError (no `inputs`) after the last epoch
    x, y = data()
    keras.utils.set_random_seed(2)
    model = Subclassed()
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    ema = ExponentialMovingAverage(0.9, every=1, batchnorm_data=x)
    try:
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[ema], verbose=0)
    except ValueError as error:
        # TensorFlow builds a subclassed model at its first step, after the
        # callbacks start (before: Keras' "Unknown variable" at that step);
        # PyTorch builds it before
        assert "not built" in str(error) and "model(x[:1])" in str(error)
        model(x[:1])
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[ema], verbose=0)
    _assert_stats(model.bn, _dense(model.d1, x.astype("float64")))


def test_a_shared_layer_is_refused_at_train_begin():
    x, y = data()
    bn = keras.layers.BatchNormalization(name="shared_bn")
    inputs = keras.Input((3,))
    h = keras.layers.Add()([bn(inputs), bn(inputs * 2.0)])
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    swa = StochasticWeightAveraging(0, batchnorm_data=x)
    with pytest.raises(ValueError, match="'shared_bn'"):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[swa], verbose=0)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert _no_state_left(model, "swa")


def test_data_of_the_wrong_shape_is_refused_at_train_begin():
    x, y = data()
    model = nested_model()
    ema = ExponentialMovingAverage(batchnorm_data=np.zeros((4, 7)))
    with pytest.raises(ValueError, match="`data` must have the model's input"):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[ema], verbose=0)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert _no_state_left(model, "ema")


def test_repeating_dataset_needs_batchnorm_steps():
    # before: the train end never returned
    tf = pytest.importorskip("tensorflow")  # tf.data

    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(5).repeat()
    with pytest.raises(ValueError, match=r"Pass `batchnorm_steps`.*"
                                         r"Received: batchnorm_steps=None"):
        StochasticWeightAveraging(0, batchnorm_data=dataset)
    model = nested_model()
    swa = StochasticWeightAveraging(0, batchnorm_data=dataset,
                                    batchnorm_steps=3)
    model.fit(dataset, steps_per_epoch=4, epochs=2, callbacks=[swa], verbose=0)
    nested_reference(model, x[:15])  # three batches of five


@pytest.mark.parametrize("steps", [0, -1, 1.5, "3"])
def test_batchnorm_steps_is_checked(steps):
    with pytest.raises((TypeError, ValueError),
                       match=rf"batchnorm_steps={steps!r}"):
        ExponentialMovingAverage(batchnorm_data=np.zeros((4, 3)),
                                 batchnorm_steps=steps)


def test_a_refused_start_leaves_no_averager_attached():
    # the EMA before the SWA in the list attached its variables already
    x, y = data()
    model = nested_model()
    plain = len(model.optimizer.variables) if model.optimizer.built else None
    ema = ExponentialMovingAverage()
    swa = StochasticWeightAveraging(0, batchnorm_data=np.zeros((4, 7)))
    with pytest.raises(ValueError, match="`data` must have the model's input"):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[ema, swa],
                  verbose=0)
    assert _no_state_left(model, "ema") and _no_state_left(model, "swa")
    if plain is not None:
        assert len(model.optimizer.variables) == plain
