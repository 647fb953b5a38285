"""Writes `format1-epoch-000003.backup.npz`, the golden old-format backup.

Run once, by the code of commit c81051f (before the training state moved to
`_internal/training_state.py`), from the repository root:

    python tests/_internal/data/make_format1_backup.py

`tests/_internal/test_training_state.py` checks that today's code still loads
it into `model_with_dropout()`. Do not regenerate it with newer code: it
stands for backups already on users' disks.
"""

import os
import shutil
import sys
import tempfile

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, os.getcwd())

import keras  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from tests.callbacks.helpers import tiny_data  # noqa: E402


def model_with_dropout(seed=0):
    """Dense, Dropout (a seed generator), Dense; Adam (slots): every kind."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3),
        keras.layers.Dropout(0.5, seed=1),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    return model


if __name__ == "__main__":
    folder = tempfile.mkdtemp()
    x, y = tiny_data()
    model_with_dropout().fit(
        x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
        callbacks=[
            kt.LossMonitor(every=1, verbose=0),
            kt.ExponentialDecay(0.01, decay=0.3),
            kt.BackupAndRestore(folder, delete_checkpoint=False),
        ],
    )
    shutil.copy(
        os.path.join(folder, "epoch-000003.backup.npz"),
        os.path.join(os.path.dirname(__file__),
                     "format1-epoch-000003.backup.npz"),
    )
