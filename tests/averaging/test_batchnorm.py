import keras
import numpy as np
import pytest

from keras_trainopt import recompute_batchnorm_statistics


def numpy_forward_stats(model, x):
    """Mean and variance of each BatchNorm input, by a NumPy forward pass."""
    stats = []
    h = x.astype("float64")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = (np.asarray(w, "float64") for w in layer.get_weights())
            h = h @ kernel + bias
            if layer.activation is keras.activations.relu:
                h = np.maximum(h, 0)
        else:  # BatchNormalization with the statistics just computed
            mean, var = h.mean(axis=0), h.var(axis=0)
            stats.append((mean, var))
            gamma, beta = (np.asarray(w, "float64")
                           for w in layer.get_weights()[:2])
            h = gamma * (h - mean) / np.sqrt(var + layer.epsilon) + beta
    return stats


def two_bn_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(4),
        keras.layers.BatchNormalization(),
    ])


@pytest.mark.parametrize("batch_size", [7, 128])
def test_matches_exact_statistics_layer_after_layer(batch_size):
    model = two_bn_model()
    for bn in model.layers[1::2]:  # non-trivial gamma and beta
        bn.gamma.assign(np.linspace(0.5, 1.5, bn.gamma.shape[0]))
        bn.beta.assign(np.linspace(-0.2, 0.3, bn.beta.shape[0]))
    x = np.random.default_rng(0).normal(size=(50, 5)).astype("float32")
    recompute_batchnorm_statistics(model, x, batch_size=batch_size)
    expected = numpy_forward_stats(model, x)
    for bn, (mean, var) in zip(model.layers[1::2], expected, strict=True):
        np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4,
                                   atol=1e-5)


def test_accepts_a_dataset_of_x_y_batches():
    tf = pytest.importorskip("tensorflow")  # tf.data

    model = two_bn_model()
    x = np.random.default_rng(1).normal(size=(40, 5)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(40))).batch(16)
    recompute_batchnorm_statistics(model, dataset)
    mean, var = numpy_forward_stats(model, x)[0]
    np.testing.assert_allclose(model.layers[1].moving_mean.numpy(), mean,
                               rtol=1e-4, atol=1e-5)


def test_nested_batchnorm_is_recomputed():
    # before (issue 19): refused; now every BatchNormalization counts
    inner = keras.Sequential([keras.layers.BatchNormalization(name="inner_bn")])
    inputs = keras.Input((3,))
    model = keras.Model(inputs, inner(inputs))
    x = np.random.default_rng(2).normal(size=(9, 3)).astype("float32")
    recompute_batchnorm_statistics(model, x, batch_size=4)
    bn = inner.layers[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean(0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.var(0),
                               rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(TypeError, match="Received: model="):
        recompute_batchnorm_statistics("model", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        recompute_batchnorm_statistics(two_bn_model(), np.zeros((4, 5)),
                                       batch_size=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        recompute_batchnorm_statistics(two_bn_model(), np.zeros((0, 5)))


# -- found by fuzzing (issue 7) ------------------------------------------------


def _bn_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])


@pytest.mark.parametrize("data", [None, 5, "abc"])
def test_data_that_is_not_arrays_or_batches_is_refused(data):
    # before: TypeError "'int' object is not iterable" (or a Keras error for
    # the characters of a string), naming nothing
    with pytest.raises(TypeError, match=r"`data` must be an array"):
        recompute_batchnorm_statistics(_bn_model(), data)


def test_list_of_arrays_must_match_the_inputs():
    # before: Keras' "expects 1 input(s) ... received 2", naming nothing
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"`data` as a list holds one array"):
        recompute_batchnorm_statistics(_bn_model(), [x, x])


@pytest.mark.parametrize("data", [np.zeros((2, 0)), np.ones(3), np.array(0.5)])
def test_arrays_of_another_shape_are_refused(data):
    # before: Keras' shape error naming no argument, or "len() of unsized
    # object" for a scalar
    with pytest.raises(ValueError, match=r"`data` must have the model's input"):
        recompute_batchnorm_statistics(_bn_model(), data)
