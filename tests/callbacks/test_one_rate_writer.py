"""One writer of the learning rate per `fit` (`apply_hooks.HookOwner`).

The decays, `SnapshotEnsemble` and SWA with a `swa_learning_rate` each set
the rate; two of them in one `fit` fail at train begin, and so does one of
them with Keras' `ReduceLROnPlateau` or `LearningRateScheduler`, whose
rates it would overwrite. The pairs that are allowed are checked against
runs and formulas that do not use this library.
"""

import math

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from tests.callbacks.helpers import RateAtBatchEnd
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model
from tests.callbacks.helpers import weights_of

LR0 = 0.05
EPOCHS = 4  # of 4 steps each (32 samples, batch 8)


def fit(model, callbacks, epochs=EPOCHS):
    x, y = tiny_data()
    return model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False,
                     verbose=0, callbacks=callbacks)


CONFLICTS = {
    "epoch_decay_then_snapshots": (
        lambda: [kt.StepDecay(factor=0.5, every=1), kt.SnapshotEnsemble(2)],
        "StepDecay and SnapshotEnsemble",
    ),
    "snapshots_then_step_decay": (
        lambda: [kt.SnapshotEnsemble(2),
                 kt.StepDecay(factor=0.5, every=2, unit="step")],
        "SnapshotEnsemble and StepDecay",
    ),
    "step_decay_then_swa_rate": (
        lambda: [kt.ExponentialDecay(decay=0.1, unit="step"),
                 kt.StochasticWeightAveraging(1, swa_learning_rate=0.01)],
        "ExponentialDecay and StochasticWeightAveraging",
    ),
    "swa_rate_then_snapshots": (
        lambda: [kt.StochasticWeightAveraging(1, swa_learning_rate=(0.1, 0.01)),
                 kt.SnapshotEnsemble(2)],
        "StochasticWeightAveraging and SnapshotEnsemble",
    ),
    "two_decays": (
        lambda: [kt.StepDecay(factor=0.5, every=1),
                 kt.InverseTimeDecay(decay=0.1, unit="step")],
        "StepDecay and InverseTimeDecay",
    ),
}


def plateau():
    """Halves the rate once no epoch beat the best by 1e9: from the second on."""
    return keras.callbacks.ReduceLROnPlateau(
        "loss", factor=0.5, patience=0, min_delta=1e9, min_lr=0.0
    )


def scheduler():
    return keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate * 0.5)


# One of ours and one of Keras', in either order: named in list order.
KERAS_CONFLICTS = {
    "epoch_decay_then_plateau": (
        lambda: [kt.StepDecay(factor=0.5, every=1), plateau()],
        "StepDecay and ReduceLROnPlateau",
    ),
    "plateau_then_step_decay": (
        lambda: [plateau(), kt.ExponentialDecay(decay=0.1, unit="step")],
        "ReduceLROnPlateau and ExponentialDecay",
    ),
    "scheduler_then_inverse_time_decay": (
        lambda: [scheduler(), kt.InverseTimeDecay(decay=0.1)],
        "LearningRateScheduler and InverseTimeDecay",
    ),
    "snapshots_then_scheduler": (
        lambda: [kt.SnapshotEnsemble(2), scheduler()],
        "SnapshotEnsemble and LearningRateScheduler",
    ),
    "plateau_then_swa_rate": (
        lambda: [plateau(),
                 kt.StochasticWeightAveraging(1, swa_learning_rate=0.01)],
        "ReduceLROnPlateau and StochasticWeightAveraging",
    ),
}


@pytest.mark.parametrize(
    "case", [*CONFLICTS, *KERAS_CONFLICTS])
def test_two_writers_fail_at_train_begin_naming_both(case):
    make, names = {**CONFLICTS, **KERAS_CONFLICTS}[case]
    model = tiny_model(keras.optimizers.SGD(LR0))
    before = weights_of(model)
    with pytest.raises(
        ValueError,
        match=f"{names} both set the learning rate of this optimizer; use "
        "one of them",
    ):
        fit(model, make())
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    for a, b in zip(weights_of(model), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_keras_writer_alone_after_a_refused_fit_sets_the_rate():
    # reference: the same Keras callback on an identical model, no library
    reference = tiny_model(keras.optimizers.SGD(LR0))
    expected = fit(reference, [plateau()]).history["learning_rate"]
    assert expected[-1] < LR0 / 2  # the plateau cut the rate
    model = tiny_model(keras.optimizers.SGD(LR0))
    decay = kt.StepDecay(factor=0.5, every=2, unit="step")
    with pytest.raises(ValueError, match="would overwrite every rate"):
        fit(model, [decay, plateau()])
    assert fit(model, [plateau()]).history["learning_rate"] == pytest.approx(
        expected, rel=1e-6)
    for a, b in zip(weights_of(model), weights_of(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_swa_without_a_rate_follows_reduce_lr_on_plateau():
    # reference: the same plateau callback without SWA
    reference, recorder = tiny_model(keras.optimizers.SGD(LR0)), WeightRecorder()
    expected = fit(reference, [plateau(), recorder]).history["learning_rate"]
    model = tiny_model(keras.optimizers.SGD(LR0))
    swa = kt.StochasticWeightAveraging(start_epoch=1, apply_at_end=False)
    history = fit(model, [swa, plateau()])
    assert history.history["learning_rate"] == pytest.approx(expected, rel=1e-6)
    for a, b in zip(weights_of(model), weights_of(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    mean = [np.mean([e[i] for e in recorder.epoch_ends[1:]], axis=0)
            for i in range(len(recorder.epoch_ends[0]))]
    for a, m in zip(swa.averaged_weights(), mean, strict=True):
        np.testing.assert_allclose(a, m, rtol=1e-5, atol=1e-6)


def test_the_failed_fit_leaves_nothing_that_blocks_the_next():
    model = tiny_model(keras.optimizers.SGD(LR0))
    decay, snapshots = kt.StepDecay(factor=0.5, every=1), kt.SnapshotEnsemble(2)
    with pytest.raises(ValueError, match="both set the learning rate"):
        fit(model, [decay, snapshots])
    history = fit(model, [decay], epochs=2)
    assert history.history["learning_rate"] == pytest.approx(
        [LR0, LR0 * 0.5], rel=1e-6
    )
    rates = RateAtBatchEnd()
    fit(model, [snapshots, rates], epochs=1)  # alone, after the decay
    assert snapshots.snapshot_steps == [10, 12]
    assert "apply" not in vars(model.optimizer)


def test_swa_without_a_rate_follows_a_step_decay():
    # reference: the same decay compiled into Keras' own optimizer
    schedule = keras.optimizers.schedules.ExponentialDecay(
        LR0, decay_steps=2, decay_rate=0.5, staircase=True
    )
    reference, recorder = tiny_model(keras.optimizers.SGD(schedule)), WeightRecorder()
    fit(reference, [recorder])
    model = tiny_model(keras.optimizers.SGD(LR0))
    swa = kt.StochasticWeightAveraging(start_epoch=1, apply_at_end=False)
    fit(model, [kt.StepDecay(factor=0.5, every=2, unit="step"), swa])
    for a, b in zip(weights_of(model), weights_of(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert swa.num_averaged == EPOCHS - 1
    mean = [np.mean([e[i] for e in recorder.epoch_ends[1:]], axis=0)
            for i in range(len(recorder.epoch_ends[0]))]
    for a, m in zip(swa.averaged_weights(), mean, strict=True):
        np.testing.assert_allclose(a, m, rtol=1e-5, atol=1e-6)


def test_swa_without_a_rate_with_snapshots_keeps_the_cosine_cycle():
    model = tiny_model(keras.optimizers.SGD(LR0))
    swa = kt.StochasticWeightAveraging(start_epoch=2, apply_at_end=False)
    snapshots, rates = kt.SnapshotEnsemble(cycles=2), RateAtBatchEnd()
    fit(model, [snapshots, swa, rates])
    length = 8  # 16 steps in 2 cycles
    expected = [LR0 / 2 * (math.cos(math.pi * (t % length) / length) + 1)
                for t in range(16)]
    assert rates.rates == pytest.approx(expected, rel=1e-6, abs=1e-8)
    assert snapshots.snapshot_steps == [8, 16]
    assert swa.num_averaged == 2


def test_ema_with_an_epoch_decay():
    model = tiny_model(keras.optimizers.SGD(LR0))
    ema = kt.ExponentialMovingAverage(0.9, every=1, apply_at_end=False)
    history = fit(model, [ema, kt.ExponentialDecay(decay=0.3)])
    assert history.history["learning_rate"] == pytest.approx(
        [LR0 * math.exp(-0.3 * e) for e in range(EPOCHS)], rel=1e-6
    )
    assert (ema.num_averaged, ema.num_skipped) == (4 * EPOCHS, 0)
