"""A rate read from the optimizer belongs to that optimizer (issue 19).

With `initial_learning_rate=None`, a decay reused after `model.compile()`
with a new optimizer (phase 2 of transfer learning) kept the first phase's
rate: phase 2 ran at 0.1 although it was compiled with 0.001. A new
optimizer is a new run and the rate is read again; a resume with Keras'
`BackupAndRestore` (the same optimizer, its state restored) keeps it.
"""

import math

import keras
import pytest

from keras_trainopt import ExponentialDecay
from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


def fit(model, callbacks, epochs, **kwargs):
    x, y = tiny_data(32)
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False, **kwargs)


def test_recompile_with_a_new_rate_is_a_new_run():
    model = tiny_model(keras.optimizers.SGD(0.1))
    decay = StepDecay(factor=0.5, every=1)
    first = fit(model, [decay], epochs=2).history["learning_rate"]
    assert first == pytest.approx([0.1 * 0.5**e for e in range(2)])
    model.compile(keras.optimizers.SGD(0.001), loss="mse")
    second = fit(model, [decay], epochs=3).history["learning_rate"]
    assert second == pytest.approx([0.001 * 0.5**e for e in range(3)])


def test_step_unit_rereads_the_rate_of_a_new_optimizer():
    model = tiny_model(keras.optimizers.SGD(0.1))
    decay = ExponentialDecay(decay=math.log(2) / 4, unit="step")
    fit(model, [decay], epochs=1)
    model.compile(keras.optimizers.Adam(0.002), loss="mse")
    fit(model, [decay], epochs=1)
    # 4 updates with the new optimizer: Keras' own schedule at step 4
    reference = keras.optimizers.schedules.ExponentialDecay(0.002, 4, 0.5)
    assert float(model.optimizer.learning_rate) == pytest.approx(
        float(reference(4)), rel=1e-6
    )


def test_same_optimizer_keeps_the_rate_on_resume(tmp_path):
    model = tiny_model(keras.optimizers.SGD(0.1))
    decay = StepDecay(factor=0.5, every=1)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path))

    class Preempt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("simulated preemption")

    with pytest.raises(RuntimeError, match="simulated preemption"):
        fit(model, [backup, decay, Preempt()], epochs=5)
    # the optimizer now holds 0.1 * 0.5**3; the curve still starts at 0.1
    resumed = fit(model, [backup, decay], epochs=5).history["learning_rate"]
    assert resumed == pytest.approx([0.1 * 0.5**e for e in (3, 4)])


def test_a_second_fit_with_the_same_optimizer_keeps_the_rate():
    model = tiny_model(keras.optimizers.SGD(0.1))
    decay = StepDecay(factor=0.5, every=1)
    fit(model, [decay], epochs=2)
    again = fit(model, [decay], epochs=4, initial_epoch=2)
    assert again.history["learning_rate"] == pytest.approx([0.025, 0.0125])


def test_snapshot_ensemble_rereads_the_rate_of_a_new_optimizer():
    model = tiny_model(keras.optimizers.SGD(0.1))
    snapshots = SnapshotEnsemble(2)
    fit(model, [snapshots], epochs=2)
    assert snapshots.learning_rate(0) == pytest.approx(0.1)
    model.compile(keras.optimizers.SGD(0.003), loss="mse")
    fit(model, [snapshots], epochs=2)
    assert snapshots.learning_rate(0) == pytest.approx(0.003)
