"""A training run that holds its folders until killed (for concurrency tests).

    python busy_run.py WORKDIR

Trains with `LossMonitor(log_dir=WORKDIR/logs)`, `SnapshotEnsemble(
directory=WORKDIR/snapshots)` and `BackupAndRestore(WORKDIR/backup)`, prints
"training" in its first epoch, then waits there until it is killed.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainopt as kt  # noqa: E402


class Wait(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print("training", flush=True)
        time.sleep(600)


def main(workdir):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    x = np.zeros((16, 4), "float32")
    model.fit(
        x, x[:, 0], epochs=2, verbose=0,
        callbacks=[
            kt.LossMonitor(os.path.join(workdir, "logs"), verbose=0),
            kt.SnapshotEnsemble(2, directory=os.path.join(workdir, "snapshots")),
            kt.BackupAndRestore(os.path.join(workdir, "backup")),
            Wait(),
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1])
