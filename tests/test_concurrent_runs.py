"""Two training runs pointed at one folder: the second fails at its start.

A real second training process holds a log folder, a snapshot folder and a
backup folder; a run here that points any one of them at the same folder
fails before its first step with an error naming the folder, and works once
the other process is gone (killed, so no stale lock is left).
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from keras_trainopt._internal import dir_lock

BUSY_RUN = os.path.join(os.path.dirname(__file__), "busy_run.py")


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("busy")
    process = subprocess.Popen(
        [sys.executable, BUSY_RUN, str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    line = process.stdout.readline()
    if line.strip() != b"training":
        process.kill()
        pytest.fail(f"the other run did not start: {line!r}")
    yield workdir, process
    process.kill()
    process.wait()


def model_and_weights():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    return model, [np.array(w) for w in model.get_weights()]


def fit(model, callback):
    x = np.ones((16, 4), "float32")
    return model.fit(x, x[:, 0], epochs=1, verbose=0, callbacks=[callback])


CALLBACKS = {
    "logs": lambda folder: kt.LossMonitor(folder, verbose=0),
    "snapshots": lambda folder: kt.SnapshotEnsemble(1, directory=folder),
    "backup": lambda folder: kt.BackupAndRestore(folder),
}
WHERE = {"logs": "TensorBoard run folder", "snapshots": "`directory`",
         "backup": "`backup_dir`"}


@pytest.mark.parametrize("kind", sorted(CALLBACKS))
def test_a_second_run_on_a_busy_folder_fails_before_its_first_step(busy, kind):
    workdir, process = busy
    assert process.poll() is None
    folder = os.path.join(workdir, kind)
    model, before = model_and_weights()
    with pytest.raises(dir_lock.FolderInUseError) as raised:
        fit(model, CALLBACKS[kind](folder))
    message = str(raised.value)
    assert WHERE[kind] in message and "in use by another training run" in message
    assert f"pid {process.pid}" in message
    for w, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)  # not one step taken


@pytest.mark.slow  # a second training process: about 20 s
def test_the_folders_are_free_once_the_other_run_is_killed(tmp_path):
    process = subprocess.Popen(
        [sys.executable, BUSY_RUN, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert process.stdout.readline().strip() == b"training"
    process.send_signal(signal.SIGKILL)
    process.wait()
    for kind, make in CALLBACKS.items():
        model, _ = model_and_weights()
        history = fit(model, make(os.path.join(tmp_path, kind)))
        assert len(history.epoch) == 1
