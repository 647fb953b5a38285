"""Snapshot callbacks reused across runs: a new optimizer is a new run (issue 19).

Reusing `CheckpointEnsemble` after `model.compile()` with a new optimizer
used to drop the earlier snapshots ([8, 16, 24] became [8, 16]): the step
count restarts at 0, and the resume pruning took that for a resume. A real
resume (the same optimizer, its step count restored) must still prune.
"""

import os

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from keras_trainopt import CheckpointEnsemble
from keras_trainopt import SnapshotEnsemble
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


def fit(model, callbacks, epochs):
    x, y = tiny_data(64)  # 8 steps per epoch
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False)


def files(folder):
    return sorted(os.listdir(folder))


def test_recompile_keeps_the_earlier_checkpoints(tmp_path):
    model = tiny_model()
    first = WeightRecorder()
    checkpoints = CheckpointEnsemble(every=1, keep=10, directory=tmp_path)
    fit(model, [first, checkpoints], epochs=3)
    assert checkpoints.snapshot_steps == [8, 16, 24]
    model.compile(keras.optimizers.SGD(0.01), loss="mse")  # phase 2
    second = WeightRecorder()
    fit(model, [second, checkpoints], epochs=2)
    assert checkpoints.snapshot_steps == [8, 16, 24, 32, 40]
    assert checkpoints.step_offset == 24
    expected = [first.epoch_ends[e] for e in range(3)] + [
        second.epoch_ends[e] for e in range(2)
    ]
    for snapshot, weights in zip(checkpoints.snapshots, expected, strict=True):
        for a, b in zip(snapshot, weights, strict=True):
            np.testing.assert_array_equal(a, b)
    assert files(tmp_path) == [
        f"snapshot-step{s:09d}.weights.h5" for s in (8, 16, 24, 32, 40)
    ]
    # the first run's files were not overwritten by the second run's steps
    clone = keras.models.clone_model(model)
    clone.load_weights(os.path.join(tmp_path, "snapshot-step000000008.weights.h5"))
    for a, b in zip(clone.get_weights(), first.epoch_ends[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_recompile_keeps_the_earlier_snapshot_ensemble(tmp_path):
    model = tiny_model()
    snapshots = SnapshotEnsemble(3, directory=tmp_path)
    fit(model, [snapshots], epochs=3)
    assert snapshots.snapshot_steps == [8, 16, 24]
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    fit(model, [snapshots], epochs=2)
    # 16 new steps in 3 cycles of ceil(16 / 3) = 6: after 6, 12 and 16
    assert snapshots.snapshot_steps == [8, 16, 24, 24 + 6, 24 + 12, 24 + 16]
    assert len(files(tmp_path)) == 6


def test_a_real_resume_still_drops_what_came_after_the_backup(tmp_path):
    # same callback, same optimizer, step count restored by Keras' backup
    model = tiny_model()
    checkpoints = CheckpointEnsemble(every=1, keep=10, directory=tmp_path / "s")
    backup = keras.callbacks.BackupAndRestore(
        str(tmp_path / "backup"), save_freq="epoch"
    )

    class Rewind(keras.callbacks.Callback):
        """Fails at epoch 3 after its backup was taken at the end of epoch 1."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise RuntimeError("simulated preemption")

    with pytest.raises(RuntimeError, match="simulated preemption"):
        fit(model, [backup, checkpoints, Rewind()], epochs=5)
    assert checkpoints.snapshot_steps == [8, 16, 24]
    fit(model, [backup, checkpoints], epochs=5)  # resumes at epoch 3
    assert checkpoints.snapshot_steps == [8, 16, 24, 32, 40]
    assert checkpoints.step_offset == 0


def test_step_offset_survives_a_state_round_trip():
    model = tiny_model()
    checkpoints = CheckpointEnsemble(every=1)
    fit(model, [checkpoints], epochs=1)
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    fit(model, [checkpoints], epochs=1)
    other = CheckpointEnsemble(every=1)
    other.set_state(checkpoints.get_state())
    assert other.step_offset == 8
    assert other.snapshot_steps == [8, 16]


class StopBeforeBatch(keras.callbacks.Callback):
    """Raises at the batch hook of step `batch` of the first epoch: after a
    backup written at that step boundary, before the later callbacks'."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            raise KeyboardInterrupt


def test_a_backup_at_a_cycles_end_holds_its_snapshot(tmp_path):
    # 2 epochs of 8 steps in 4 cycles of 4: snapshots after 4, 8, 12, 16.
    # A backup every 4 updates is written at step 4's boundary before the
    # snapshot's batch hook runs; the run stops right there, as a SIGTERM
    # would end it.
    plain = SnapshotEnsemble(4)
    recorder = WeightRecorder()
    fit(tiny_model(), [plain, recorder], epochs=2)
    assert plain.snapshot_steps == [4, 8, 12, 16]

    def callbacks():
        snapshots = SnapshotEnsemble(4, directory=tmp_path / "snapshots")
        backup = kt.BackupAndRestore(tmp_path / "backup", save_freq=4)
        return snapshots, backup

    snapshots, backup = callbacks()
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), [backup, StopBeforeBatch(4), snapshots], epochs=2)
    assert snapshots.snapshot_steps == [4]
    assert [name for name in files(tmp_path / "snapshots")
            if name.startswith("snapshot")] == ["snapshot-step000000004.weights.h5"]

    snapshots, backup = callbacks()
    fit(tiny_model(seed=1), [backup, snapshots], epochs=2)
    assert backup.restored_step == 4
    assert snapshots.snapshot_steps == [4, 8, 12, 16]
    for taken, step in zip(snapshots.snapshots, [4, 8, 12, 16], strict=True):
        for a, b in zip(taken, recorder.trajectory[step], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
