import math
import os

import keras
import numpy as np
import pytest

from keras_trainopt import CheckpointEnsemble
from keras_trainopt import EnsembleModel
from keras_trainopt import SnapshotEnsemble
from tests.callbacks.helpers import Interrupt
from tests.callbacks.helpers import RateAtBatchEnd
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import needs_steps_per_execution
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model

LR0 = 0.1


def fit(model, callbacks, epochs=5, **kwargs):
    x, y = tiny_data(48)
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False, **kwargs)


def huang(i, lr0, total, cycles):
    """Huang et al. 2017, eq. 2, 1-based iteration i."""
    length = math.ceil(total / cycles)
    return lr0 / 2 * (math.cos(math.pi * ((i - 1) % length) / length) + 1)


@pytest.mark.parametrize("cycles", [1, 3, 4, 7])
def test_schedule_matches_the_formula_at_every_step(cycles):
    model = tiny_model(keras.optimizers.SGD(LR0))
    rates = RateAtBatchEnd()
    snapshots = SnapshotEnsemble(cycles)
    fit(model, [snapshots, rates])
    total = 30  # 5 epochs x 6 steps
    assert snapshots.cycle_steps == math.ceil(total / cycles)
    expected = [huang(i, LR0, total, cycles) for i in range(1, total + 1)]
    assert rates.rates == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_snapshots_are_the_weights_at_each_cycle_end():
    model = tiny_model()
    recorder = WeightRecorder()
    snapshots = SnapshotEnsemble(4)  # L = 8: after steps 8, 16, 24 and 30
    fit(model, [recorder, snapshots])
    assert snapshots.snapshot_steps == [8, 16, 24, 30]
    for step, snapshot in zip(snapshots.snapshot_steps, snapshots.snapshots,
                              strict=True):
        for a, b in zip(snapshot, recorder.trajectory[step], strict=True):
            np.testing.assert_array_equal(a, b)


def test_ensemble_averages_the_snapshots_predictions(tmp_path):
    model = tiny_model()
    snapshots = SnapshotEnsemble(3)
    fit(model, [snapshots])
    x, _ = tiny_data(10, seed=5)
    predictions = []
    for weights in snapshots.snapshots:
        member = tiny_model()
        member.set_weights(weights)
        predictions.append(member.predict(x, verbose=0))
    ensemble = snapshots.ensemble()
    assert isinstance(ensemble, EnsembleModel) and len(ensemble.members) == 3
    np.testing.assert_allclose(ensemble.predict(x, verbose=0),
                               np.mean(predictions, axis=0), rtol=1e-5)
    last_two = snapshots.ensemble(last=2).predict(x, verbose=0)
    np.testing.assert_allclose(last_two, np.mean(predictions[1:], axis=0),
                               rtol=1e-5)
    path = str(tmp_path / "snapshots.keras")
    ensemble.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               np.mean(predictions, axis=0), rtol=1e-5)


def test_snapshots_are_written_to_the_directory(tmp_path):
    model = tiny_model()
    snapshots = SnapshotEnsemble(2, directory=tmp_path / "snaps")
    fit(model, [snapshots])
    files = sorted(os.listdir(tmp_path / "snaps"))
    assert files == ["snapshot-step000000015.weights.h5",
                     "snapshot-step000000030.weights.h5"]
    check = tiny_model()
    check.load_weights(str(tmp_path / "snaps" / files[0]))
    for a, b in zip(check.get_weights(), snapshots.snapshots[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resumed_run_has_the_same_snapshots(tmp_path):
    reference = SnapshotEnsemble(3)
    fit(tiny_model(), [reference])

    def run(extra=()):
        snapshots = SnapshotEnsemble(3, directory=tmp_path / "snaps")
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        fit(tiny_model(), [backup, snapshots, *extra])
        return snapshots

    with pytest.raises(RuntimeError, match="simulated preemption"):
        run([Interrupt(3)])
    resumed = run()  # a new callback, as in a new process
    assert resumed.snapshot_steps == reference.snapshot_steps == [10, 20, 30]
    for ours, theirs in zip(resumed.snapshots, reference.snapshots, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_initial_rate_defaults_to_the_optimizers():
    model = tiny_model(keras.optimizers.SGD(0.05))
    snapshots = SnapshotEnsemble(2)
    fit(model, [snapshots], epochs=1)
    assert snapshots.learning_rate(0) == pytest.approx(0.05)
    explicit = SnapshotEnsemble(2, initial_learning_rate=0.3)
    fit(tiny_model(), [explicit], epochs=1)
    assert explicit.learning_rate(0) == pytest.approx(0.3)


def test_more_cycles_than_steps_is_refused_before_training():
    with pytest.raises(ValueError, match="Received: cycles=31"):
        fit(tiny_model(), [SnapshotEnsemble(31)])


@needs_steps_per_execution
def test_steps_per_execution_not_dividing_a_cycle_warns():
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse", steps_per_execution=4)
    snapshots = SnapshotEnsemble(3)  # L = 10
    with pytest.warns(UserWarning, match="steps_per_execution=4"):
        fit(model, [snapshots])
    assert len(snapshots.snapshots) == 3


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"cycles": 0}, ValueError, "Received: cycles=0"),
        ({"cycles": 2.0}, TypeError, "Received: cycles=2.0"),
        ({"initial_learning_rate": -1.0}, ValueError,
         "Received: initial_learning_rate=-1"),
        ({"directory": 3}, TypeError, "Received: directory=3"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, text):
    with pytest.raises(error) as info:
        SnapshotEnsemble(**kwargs)
    assert text in str(info.value)


def test_ensemble_before_training_says_why():
    with pytest.raises(ValueError, match="no snapshots yet"):
        SnapshotEnsemble().ensemble()


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_directory_is_checked_when_built(tmp_path):
    file = tmp_path / "snapshots"
    file.write_text("")
    for cls in (SnapshotEnsemble, CheckpointEnsemble):
        # before: accepted; the first snapshot failed in os.makedirs
        with pytest.raises(ValueError, match=r"`directory` must be a non-empty"):
            cls(directory="")
        with pytest.raises(ValueError, match=r"`directory` must be a folder"):
            cls(directory=file)
