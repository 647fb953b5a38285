import keras
import numpy as np
import pytest

from keras_trainopt import LossMonitor
from keras_trainopt._internal import loss_buffer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def documented_rule(ran, elapsed):
    """The pacing of the docs, written out: 32 steps and 0.1 s, 256 steps,
    or a second (with at least one step)."""
    return ran >= 256 or (ran >= 1 and elapsed >= 1.0) or (
        ran >= 32 and elapsed >= 0.1)


@pytest.fixture
def buffer(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(loss_buffer, "time", clock)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    model.fit(np.zeros((8, 4)), np.zeros((8, 1)), verbose=0)
    return loss_buffer.LossBuffer(model, every=1), clock


@pytest.mark.parametrize("ran, elapsed", [
    (0, 5.0), (1, 0.99), (1, 1.0), (31, 0.5), (32, 0.05), (32, 0.1),
    (100, 0.099), (255, 0.09), (256, 0.0), (300, 0.0),
])
def test_reads_are_paced_by_steps_and_time(buffer, ran, elapsed):
    buffer, clock = buffer
    buffer.epoch_begins()
    clock.now += elapsed
    assert buffer.read_due(ran) == documented_rule(ran, elapsed)


def test_the_buffer_holds_every_reading_between_two_reads(buffer):
    buffer, _ = buffer
    # the last read comes at most MAX_READ_SPAN + s - 1 steps after the
    # previous one; with a reading per update, all of them must fit
    assert buffer.capacity > loss_buffer.MAX_READ_SPAN


class OptimizerStateSize(keras.callbacks.Callback):
    """The number of optimizer variables at each epoch's end (in the step's
    state on JAX)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def on_epoch_end(self, epoch, logs=None):
        self.sizes.append(len(self.model.optimizer.variables))


def test_the_buffer_adds_three_arrays_to_the_jax_train_state(tmp_path):
    # Each array in and out of JAX's jitted step costs a few microseconds
    # of every step: the buffer keeps its integers (the rows' steps, the
    # mark, the row count) in one.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    x, y = np.zeros((32, 4)), np.zeros((32, 1))
    plain, monitored = OptimizerStateSize(), OptimizerStateSize()
    model.fit(x, y, batch_size=8, callbacks=[plain], verbose=0)
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[
        LossMonitor(str(tmp_path), every=2, verbose=0), monitored])
    added = monitored.sizes[0] - plain.sizes[0]
    assert added == (3 if keras.backend.backend() == "jax" else 0)
    assert len(model.optimizer.variables) == plain.sizes[0]  # detached after
