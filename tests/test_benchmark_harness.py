"""`benchmarks/harness.py` times what it says it times.

Only lower bounds set by a callback's own `time.sleep` are asserted: no
timing of the library itself.
"""

import time

import keras

from benchmarks import harness


class SleepAfterFirstEpoch(keras.callbacks.Callback):
    """Sleeps `seconds` at the start of every epoch but the first."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        if epoch:
            time.sleep(self.seconds)


def test_a_timed_fit_of_several_epochs_spans_all_of_them():
    made = []

    def callbacks():
        made.append(SleepAfterFirstEpoch(0.05))
        return made[-1:]

    sgd = lambda: keras.optimizers.SGD(0.01)  # noqa: E731
    results = harness.measure(
        [harness.Variant("plain", sgd),
         harness.Variant("sleeps", sgd, callbacks)],
        model="mlp128", rounds=2, steps=2, epochs=3,
    )
    (sleeper,) = made  # built once, reused by the warm-up and every round
    assert sleeper.epochs == [0] + [0, 1, 2] * 2  # the warm-up: one epoch
    # Two sleeps of 50 ms in each fit of 3 x 2 steps: >= 16.7 ms a step,
    # which a timing of the first epoch alone would not contain.
    assert len(results["sleeps"]["ms"]) == 2
    assert min(results["sleeps"]["ms"]) >= 2 * 50.0 / (3 * 2)
