"""Compatibility matrix, axis 4: every callback with Keras' own callbacks.

Each public callback runs on the functional model as in `test_alone` and is
checked against the same reference, now with the Keras callbacks people
add to almost every `fit` after it: `EarlyStopping` (never stopping here),
`ModelCheckpoint` (a `.keras` file at each epoch's end), `CSVLogger`,
`TensorBoard` (where TensorFlow is installed: Keras' callback writes with
`tf.summary`) and `TerminateOnNaN`. Each of those is checked to have done
its own job: the CSV holds History's losses, the checkpoint loads with
`keras.models.load_model` and holds the weights the recorder saw at the
last epoch's end, and TensorBoard wrote its train and validation runs.
`BackupAndRestore`'s cell is an interrupted run resumed with all of them,
against an uninterrupted one.

Keras' callbacks that set the learning rate (`ReduceLROnPlateau`,
`LearningRateScheduler`) are refused next to ours that set it
(tests/callbacks/test_one_rate_writer.py), and `EarlyStopping` with
`restore_best_weights=True` next to an average that is applied at the end
gets a warning (tests/callbacks/test_weight_average_composition.py).
"""

import csv
import importlib.util

import keras
import pytest

from tests.callbacks.helpers import weights_of
from tests.compat import models
from tests.compat import references as ref

# Keras' TensorBoard callback writes with tf.summary: without TensorFlow
# (the JAX-only install) it cannot run, and the others still do.
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def keras_callbacks(folder):
    """The usual Keras callbacks, writing into `folder`."""

    def make():
        return [
            keras.callbacks.EarlyStopping("val_loss", patience=100),
            keras.callbacks.ModelCheckpoint(folder / "model.keras"),
            keras.callbacks.CSVLogger(folder / "log.csv"),
            *([keras.callbacks.TensorBoard(folder / "tensorboard")]
              if HAS_TENSORFLOW else []),
            keras.callbacks.TerminateOnNaN(),
        ]

    return make


def check_keras_outputs(folder, model_weights, history=None):
    """What each Keras callback should have left in `folder`."""
    with open(folder / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if history is not None:
        assert [float(r["loss"]) for r in rows] == pytest.approx(
            history.history["loss"], rel=1e-6)
    loaded = keras.models.load_model(folder / "model.keras", compile=False)
    ref.assert_weights_equal(weights_of(loaded), model_weights)
    for run in ("train", "validation") if HAS_TENSORFLOW else ():
        assert list((folder / "tensorboard" / run).iterdir()), run


@pytest.mark.parametrize("callback", ref.CALLBACKS)
def test_with_keras_callbacks(callback, tmp_path):
    folder = tmp_path / "keras"
    folder.mkdir()
    result = ref.run_alone(callback, models.FACTORIES["functional"], tmp_path,
                           others=keras_callbacks(folder))
    if callback == "BackupAndRestore":
        # the resumed fit wrote them last; it ends on its last epoch's end
        check_keras_outputs(folder, weights_of(result.model))
        return
    _, _, rec, history = result
    assert history.epoch == list(range(ref.EPOCHS))
    check_keras_outputs(folder, rec.epoch_ends[-1], history)
