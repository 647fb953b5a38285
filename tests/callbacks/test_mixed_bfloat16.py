"""The monitors under `mixed_bfloat16`: layers output bfloat16.

Under that policy (TPUs, recent GPUs) a layer computes and outputs
bfloat16, which NumPy has only through `ml_dtypes`; the weights stay
float32 and no loss scaling is involved. Expected values come from the
layers' own outputs, read through a plain Keras model and NumPy.
"""

import tempfile

import keras
import numpy as np
import pytest

from keras_trainopt import ActivationMonitor
from keras_trainopt import BackupAndRestore
from keras_trainopt import CheckpointEnsemble
from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import StepDecay
from keras_trainopt import TrainingDoctor
from tests.callbacks.helpers import global_policy


@pytest.fixture
def mixed_bfloat16():
    with global_policy("mixed_bfloat16"):
        yield


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    return x, rng.integers(0, 3, size=128)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu", name="relu"),
        keras.layers.Dense(4, activation="relu", name="dead",
                           bias_initializer=keras.initializers.Constant(-50.0)),
        keras.layers.Dense(16, activation="tanh", name="tanh",
                           kernel_initializer=keras.initializers.RandomNormal(
                               stddev=3.0)),
        keras.layers.Dense(3, name="logits"),
    ])
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_activation_statistics_of_bfloat16_outputs(mixed_bfloat16):
    # before: TypeError "`values` must be an array or a sequence of real
    # numbers", at the first epoch's end
    x, y = _data()
    model = _model()
    assert model.get_layer("relu").compute_dtype == "bfloat16"
    monitor = ActivationMonitor(x[:64], tempfile.mkdtemp(), verbose=0)
    model.fit(x, y, epochs=1, batch_size=32, callbacks=[monitor], verbose=0)
    names = ["relu", "dead", "tanh"]
    outputs = keras.Model(
        model.inputs, [model.get_layer(n).output for n in names]
    ).predict_on_batch(x[:64])
    for name, out in zip(names, outputs, strict=True):
        assert "bfloat16" in str(out.dtype)
        out = np.asarray(out, "float64")
        stats = monitor.stats[name]
        assert stats["mean"] == pytest.approx(out.mean(), rel=1e-9)
        assert stats["std"] == pytest.approx(out.std(), rel=1e-9)
        counts, _ = stats["histogram"]
        assert counts.sum() == out.size
    relu = np.asarray(outputs[0], "float64")
    assert monitor.stats["relu"]["dead_fraction"] == np.mean(
        np.all(relu <= 0, axis=0))
    assert monitor.stats["dead"]["dead_fraction"] == 1.0
    tanh = np.asarray(outputs[2], "float64")
    assert monitor.stats["tanh"]["saturated_fraction"] == np.mean(
        np.abs(tanh) >= 0.9)


def test_the_doctor_runs_and_finds_the_dead_layer(mixed_bfloat16):
    x, y = _data()
    model = _model()
    doctor = TrainingDoctor(tempfile.mkdtemp(), x[:64], metric="loss",
                            every=2, update_ratio_every=2, verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=2, batch_size=32,
              callbacks=[doctor], verbose=0)
    losses = doctor.monitors["loss"].losses
    assert losses and np.all(np.isfinite(losses))
    ratios = doctor.monitors["update_ratio"].layer_ratios
    assert set(ratios) == {"relu", "dead", "tanh", "logits"}
    assert "dead" in " ".join(a.message for a in doctor.advice)


def test_the_callbacks_combined(mixed_bfloat16, tmp_path):
    # a decay, an average, checkpoints, the doctor and backups in one fit:
    # the weights and what the callbacks keep of them stay float32
    x, y = _data()
    model = _model()
    ema = ExponentialMovingAverage(0.9, every=1, apply_at_end=False)
    checkpoints = CheckpointEnsemble(every=1, keep=2)
    doctor = TrainingDoctor(str(tmp_path / "tb"), x[:64], metric="loss",
                            verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=3, batch_size=32, verbose=0,
              callbacks=[StepDecay(factor=0.5, every=1), ema, checkpoints,
                         doctor, BackupAndRestore(str(tmp_path / "backup"))])
    rate = keras.ops.convert_to_numpy(model.optimizer.learning_rate)
    assert float(rate) == pytest.approx(0.01 * 0.5**2)  # the third epoch's
    averaged = ema.averaged_weights()
    assert [np.asarray(w).dtype for w in averaged] == ["float32"] * len(averaged)
    assert all(np.all(np.isfinite(w)) for w in averaged)
    assert len(checkpoints.snapshots) == 2
    assert {w.dtype for snap in checkpoints.snapshots for w in snap} == {
        np.dtype("float32")}
    assert doctor.advice
