"""Reading the training state between steps: `read_live` and friends."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainopt._internal import training


def compiled_model(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), loss="mse")
    return model


class ReadAt(keras.callbacks.Callback):
    """Reads with `read` before batch `batch`, then the synced truth."""

    def __init__(self, batch, read):
        super().__init__()
        self.batch, self.read = batch, read

    def on_train_batch_begin(self, batch, logs=None):
        if batch != self.batch:
            return
        # not `self.model`: on JAX, Keras' property syncs the whole state
        model = training.unsynced_model(self)
        self.got = self.read(model)
        self.stayed_unsynced = not getattr(model, "_jax_state_synced", True)
        training.sync_state(self.model)
        tracker = next(m for m in self.model.metrics if m.name == "loss")
        self.truth = {
            "iterations": int(ops.convert_to_numpy(self.model.optimizer.iterations)),
            "total": float(ops.convert_to_numpy(tracker.total)),
            "count": float(ops.convert_to_numpy(tracker.count)),
        }


def fit(model, callback):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), batch_size=4, epochs=1, shuffle=False,
              callbacks=[callback], verbose=0)


def test_read_live_gives_the_synced_values_without_syncing():
    def read(model):
        tracker = next(m for m in model.metrics if m.name == "loss")
        variables = [model.optimizer.iterations, tracker.total, tracker.count]
        return [value.item() for value in training.read_live(model, variables)]

    probe = ReadAt(5, read)
    fit(compiled_model(0.01), probe)
    truth = probe.truth
    assert truth["iterations"] == 5 and truth["count"] == 20.0
    assert probe.got == [truth["iterations"], truth["total"], truth["count"]]
    if keras.backend.backend() == "jax":
        assert probe.stayed_unsynced  # no write-back of the whole state


@pytest.mark.parametrize(
    "learning_rate",
    [0.05, keras.optimizers.schedules.ExponentialDecay(0.05, 2, 0.5)],
)
def test_learning_rate_and_applied_updates_between_steps(learning_rate):
    probe = ReadAt(
        3, lambda m: (training.applied_updates(m), training.learning_rate(m))
    )
    fit(compiled_model(learning_rate), probe)
    step, rate = probe.got
    assert step == 3
    want = 0.05 if isinstance(learning_rate, float) else 0.05 * 0.5 ** (3 / 2)
    assert rate == pytest.approx(want, rel=1e-6)
    if keras.backend.backend() == "jax":
        assert probe.stayed_unsynced


def test_the_loss_reader_needs_a_loss_tracker():
    class NoTracker(keras.Model):  # a custom model that tracks no loss
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        @property
        def metrics(self):
            return []

    model = NoTracker()
    model.compile(keras.optimizers.SGD(0.1), metrics=["mae"])
    with pytest.raises(ValueError, match="no loss tracker.*Received: model.metrics"):
        training.BatchLossReader(model)
