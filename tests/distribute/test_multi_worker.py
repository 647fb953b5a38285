"""`patch_keras_for_multi_worker` in-process: what it leaves alone.

What it fixes needs a real two-worker cluster, so the proof that it works
is `test_distribute.py::test_multi_worker_equals_one_device`: two worker
processes on 127.0.0.1 train with the patch and equal one device within
1e-6. Here: bad input, the no-op cases, that another strategy's reduction
is unchanged, and that patching twice wraps Keras' function once.
"""

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")  # tf.distribute strategies

from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: E402

from keras_trainopt.distribute import patch_keras_for_multi_worker  # noqa: E402


@pytest.fixture
def keras_reduce(monkeypatch):
    """Keras' own `reduce_per_replica`, put back after the test."""
    original = tf_trainer.reduce_per_replica
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", original)
    return original


def compiled_model(strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize("model", [None, "model", keras.layers.Dense(1)])
def test_refuses_what_is_not_a_model(model):
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model.*"
                                        r"Received: model="):
        patch_keras_for_multi_worker(model)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute strategies are TensorFlow's")
@pytest.mark.parametrize("strategy", [None, "one_device"])
def test_does_nothing_outside_multi_worker(keras_reduce, strategy):
    if strategy == "one_device":
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = compiled_model(strategy)
    assert patch_keras_for_multi_worker(model) is model
    assert tf_trainer.reduce_per_replica is keras_reduce
    assert "_maybe_symbolic_build" not in vars(model)

    x = np.ones((8, 4), "float32")
    history = model.fit(x, x[:, :1], epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="tf.distribute strategies are TensorFlow's")
def test_other_strategies_reduce_as_before_and_patching_twice_wraps_once(
    keras_reduce, monkeypatch
):
    # A MultiWorkerMirroredStrategy cannot be made in this process without
    # claiming its devices for good; the patch only looks at the type.
    model = compiled_model()
    fake = type("FakeMultiWorker", (), {})
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", fake)
    model._distribute_strategy = fake()
    patch_keras_for_multi_worker(model)
    patch_keras_for_multi_worker(model)
    patched = tf_trainer.reduce_per_replica
    assert patched is not keras_reduce
    assert patched._keras_trainopt_original is keras_reduce
    assert "_maybe_symbolic_build" in vars(model)

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    values = {"loss": tf.constant(2.5), "mae": tf.constant([1.0, 3.0])}
    for reduction in ("auto", "mean", "first", "sum"):
        got = patched(values, strategy, reduction)
        want = keras_reduce(values, strategy, reduction)
        for key in values:
            np.testing.assert_array_equal(got[key], want[key])
