import keras
import numpy as np
import pytest

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
