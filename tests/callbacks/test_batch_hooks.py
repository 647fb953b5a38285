"""keras_trainopt's callbacks leave Keras' asynchronous batch hooks on.

A callback that overrides `on_train_batch_end` makes Keras, on the backends
whose callbacks may run on another thread (JAX, PyTorch), dispatch every
callback's batch hooks synchronously and convert each step's logs to Python
floats, which waits for the device after every step. Keras treats a hook
marked `_is_default` as not overridden.
"""

import inspect

import keras
import numpy as np
import pytest

import keras_trainopt as kt

CALLBACKS = sorted(
    name
    for name in kt.__all__
    if inspect.isclass(getattr(kt, name))
    and issubclass(getattr(kt, name), keras.callbacks.Callback)
)


def overrides_batch_end(callback_class):
    return not getattr(callback_class.on_train_batch_end, "_is_default", False)


def test_every_callback_is_checked():
    assert {
        "LossMonitor", "UpdateRatioLogger", "TrainingDoctor",
        "SnapshotEnsemble", "StochasticWeightAveraging",
    } < set(CALLBACKS)


@pytest.mark.parametrize("name", CALLBACKS)
def test_no_callback_has_a_batch_end_hook(name):
    assert not overrides_batch_end(getattr(kt, name))


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="Keras dispatches TensorFlow's callbacks synchronously anyway",
)
def test_keras_dispatches_the_monitors_asynchronously(tmp_path):
    x = np.zeros((4, 3), "float32")
    callbacks = [
        kt.LossMonitor(verbose=0),
        kt.UpdateRatioLogger(verbose=0),
        kt.TrainingDoctor(x_probe=x, verbose=0),
        kt.BackupAndRestore(str(tmp_path / "backup")),
        kt.ExponentialMovingAverage(),
        kt.StochasticWeightAveraging(0),
        kt.SnapshotEnsemble(2),
        kt.ExponentialDecay(0.1),
    ]
    assert keras.callbacks.CallbackList(callbacks)._async_train

    # and the check sees a batch-end hook: the test can fail
    class Waits(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    assert not keras.callbacks.CallbackList(
        [*callbacks, Waits()]
    )._async_train
