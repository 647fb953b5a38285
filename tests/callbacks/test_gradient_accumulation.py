"""The callbacks under Keras' gradient accumulation.

With `gradient_accumulation_steps=k` the optimizer's `apply` runs at every
batch but changes the weights at every k-th one only, and Keras'
`optimizer.iterations` counts those updates. Every callback counts updates
as Keras does: a decay in `unit="step"` decays per update, an average folds
in each update once, the monitors measure updates, not batches. Each test
compares with a plain formula over the weights a recorder saw after every
batch (they change at every k-th only), or over Keras' own batch logs.
"""

import math

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from tests.callbacks.helpers import RateAtBatchEnd
from tests.callbacks.helpers import RateRecorder
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import weights_of

K = 4  # batches per update
BATCH = 4


def accumulating_model(rate=0.05, optimizer=keras.optimizers.SGD):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer(rate, gradient_accumulation_steps=K), loss="mse")
    return model


def fit(model, callbacks, batches_per_epoch=16, epochs=2):
    x, y = tiny_data(batches_per_epoch * BATCH)
    recorder = WeightRecorder()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False,
                        verbose=0, callbacks=[*callbacks, recorder])
    return recorder.trajectory, history


def after_updates(trajectory):
    """The weights before the first update and after each one."""
    kept = trajectory[::K]
    # the reference itself: the weights change at every k-th batch only
    for i, weights in enumerate(trajectory):
        np.testing.assert_array_equal(weights[0], kept[i // K][0])
    return kept


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_an_accumulating_optimizer_counts_updates():
    # what the tests below rely on: Keras' own count
    model = accumulating_model()
    trajectory, _ = fit(model, [], batches_per_epoch=18, epochs=1)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    assert len(after_updates(trajectory)) == 5


@pytest.mark.parametrize("every", [1, 3])
def test_the_ema_folds_in_each_update_once(every):
    model = accumulating_model()
    ema = kt.ExponentialMovingAverage(0.6, every=every, warmup=False,
                                      apply_at_end=False)
    trajectory, _ = fit(model, [ema], batches_per_epoch=18)  # 9 updates
    updates = after_updates(trajectory)
    average = [np.array(w, "float64") for w in updates[0]]
    coefficient = 1.0 - 0.6**every  # the per-update decay, compounded
    for weights in updates[every::every]:
        average = [a + coefficient * (w - a)
                   for a, w in zip(average, weights, strict=True)]
    assert ema.num_averaged == 9 // every
    assert_close(ema.get_state()["average"], average)


def test_a_step_decay_decays_per_update_not_per_batch():
    model = accumulating_model(0.1)
    recorder = RateRecorder()
    fit(model, [kt.StepDecay(0.1, 0.5, every=2, unit="step"), recorder])
    assert [row[1] for row in recorder.rows] == [b // K for b in range(32)]
    for _, updates, rate in recorder.rows:
        assert rate == pytest.approx(0.1 * 0.5 ** (updates // 2), rel=1e-6)


@pytest.mark.parametrize("make", [
    lambda: kt.StepDecay(0.1, 0.5, every=2, unit="step"),
    lambda: kt.ExponentialDecay(0.1, 0.3, unit="step", warmup=2),
], ids=["step", "exponential"])
def test_to_schedule_counts_updates_as_the_callback(make):
    # Keras calls the optimizer's schedule with the batches; told the
    # accumulation, the schedule counts updates as the callback does
    decay = make()
    with_callback = RateAtBatchEnd()
    fit(accumulating_model(0.1), [decay, with_callback])
    schedule = decay.to_schedule(gradient_accumulation_steps=K)
    in_optimizer = RateAtBatchEnd()
    fit(accumulating_model(schedule), [in_optimizer])
    # at each batch's end the rate of the next one: the curve at the
    # updates done
    expected = [decay.learning_rate((b + 1) // K) for b in range(32)]
    assert with_callback.rates == pytest.approx(expected, rel=1e-5)
    assert in_optimizer.rates == pytest.approx(expected, rel=1e-5)
    again = type(schedule).from_config(schedule.get_config())
    assert again.gradient_accumulation_steps == K


def test_an_epoch_schedule_counts_batches_and_refuses_the_accumulation():
    decay = kt.StepDecay(0.1, 0.5, every=1)
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=4"):
        decay.to_schedule(steps_per_epoch=16, gradient_accumulation_steps=4)


def test_swa_averages_the_weights_each_epoch_ended_with():
    model = accumulating_model()
    swa = kt.StochasticWeightAveraging(1, apply_at_end=False)
    # 18 batches an epoch: epochs end 2 batches after their last update
    trajectory, _ = fit(model, [swa], batches_per_epoch=18, epochs=3)
    ends = [trajectory[18 * epoch] for epoch in (2, 3)]
    expected = [np.mean(layer, axis=0) for layer in zip(*ends, strict=True)]
    assert swa.num_averaged == 2
    assert_close(swa.get_state()["average"], expected)


def test_snapshot_cycles_are_counted_in_updates():
    model = accumulating_model(0.1)
    snapshots = kt.SnapshotEnsemble(cycles=2)
    rates = RateAtBatchEnd()
    # 2 epochs of 16 batches: 8 updates, two cycles of 4
    trajectory, _ = fit(model, [snapshots, rates])
    updates = after_updates(trajectory)
    assert snapshots.cycle_steps == 4
    assert snapshots.snapshot_steps == [4, 8]
    for taken, expected in zip(snapshots.snapshots, [updates[4], updates[8]],
                               strict=True):
        assert_close(taken, expected)
    # the rate at each batch: the cosine at the updates before it, restarted
    # every 4 (Huang et al. 2017, eq. 2)
    expected = [0.1 / 2 * (math.cos(math.pi * (b // K % 4) / 4) + 1)
                for b in range(32)]
    assert rates.rates == pytest.approx(expected, rel=1e-5, abs=1e-7)


def batch_losses(history_rows):
    """Each batch's loss, from Keras' running mean of the epoch."""
    losses = []
    for means in history_rows:
        for b, mean in enumerate(means):
            losses.append((b + 1) * mean - b * (means[b - 1] if b else 0.0))
    return losses


class BatchLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1].append(float(logs["loss"]))


def test_the_loss_monitor_reads_the_loss_of_each_span_of_updates():
    model = accumulating_model()
    monitor = kt.LossMonitor(every=2, verbose=0)
    logs = BatchLogs()
    fit(model, [monitor, logs])  # 2 epochs of 4 updates
    assert monitor.steps == [2, 4, 6, 8]
    per_batch = batch_losses(logs.epochs)
    span = 2 * K  # the batches of 2 updates
    expected = [np.mean(per_batch[i:i + span])
                for i in range(0, len(per_batch), span)]
    np.testing.assert_allclose(monitor.losses, expected, rtol=1e-4)


@pytest.mark.parametrize("every", [1, 3])
def test_update_ratios_measure_an_update_not_a_batch(every):
    model = accumulating_model()
    logger = kt.UpdateRatioLogger(every=every, verbose=0)
    trajectory, _ = fit(model, [logger])  # 8 updates
    updates = after_updates(trajectory)
    # the last update measured: the one after a multiple of `every`
    last = max(t + 1 for t in range(8) if t % every == 0)
    assert logger.step == last
    before, after = updates[last - 1], updates[last]
    expected = [np.linalg.norm(a - b) / np.linalg.norm(b)
                for b, a in zip(before, after, strict=True)]
    assert min(expected) > 0
    np.testing.assert_allclose(list(logger.ratios.values()), expected,
                               rtol=1e-4)


def test_the_callbacks_combined_under_accumulation(tmp_path):
    model = accumulating_model(0.05, optimizer=keras.optimizers.Adam)
    x_probe = tiny_data(64)[0]
    decay = kt.ExponentialDecay(0.05, 0.9, unit="step")  # 0.05 e^(-0.9 t)
    ema = kt.ExponentialMovingAverage(0.9, every=1)
    checkpoints = kt.CheckpointEnsemble(directory=tmp_path / "snapshots")
    doctor = kt.TrainingDoctor(tmp_path / "logs", x_probe, metric="loss",
                               verbose=0)
    backups = kt.BackupAndRestore(tmp_path / "backup", save_freq=3)
    recorder = RateRecorder()
    x, y = tiny_data(64)
    model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
              validation_split=0.25,
              callbacks=[decay, ema, checkpoints, doctor, backups, recorder])
    # 12 batches an epoch, 3 updates: 9 in all
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 9
    assert ema.num_averaged == 9
    for _, updates, rate in recorder.rows:
        assert rate == pytest.approx(0.05 * math.exp(-0.9 * updates), rel=1e-5)
    assert len(checkpoints.snapshots) == 3
    loss = doctor.monitors["loss"]
    assert loss.steps and max(loss.steps) == 9
    ratios = doctor.monitors["update_ratio"].layer_ratios
    assert ratios and all(r > 0 for r in ratios.values())
    assert doctor.advice


class StopAtBatch(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("save_freq", ["epoch", 1])
def test_a_run_stopped_between_updates_resumes_exactly(tmp_path, save_freq):
    def train(folder, stop=None, resume=False):
        model = accumulating_model(0.05, optimizer=keras.optimizers.Adam)
        if resume:  # as a new process would start, but with other weights
            model.set_weights([w + 1.0 for w in model.get_weights()])
        ema = kt.ExponentialMovingAverage(0.5, every=1, apply_at_end=False)
        monitor = kt.LossMonitor(every=1, verbose=0)
        backup = kt.BackupAndRestore(folder, save_freq=save_freq)
        x, y = tiny_data(18 * BATCH)
        extra = [] if stop is None else [StopAtBatch(*stop)]
        model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
                  callbacks=[monitor, backup, ema, *extra])
        return model, ema, monitor, backup

    plain, plain_ema, plain_monitor, _ = train(tmp_path / "plain")
    # 18 batches an epoch: the first ends 2 batches into an update, so the
    # backup at its end holds those 2 batches' accumulated gradients
    # (`save_freq="epoch"`); stopped at batch 10 of epoch 1, 2 batches after
    # an update, from a backup after it (`save_freq=1`)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "stopped", stop=(1, 10))
    resumed, resumed_ema, resumed_monitor, backup = train(
        tmp_path / "stopped", resume=True)
    assert backup.restored_epoch == 1
    assert_close(weights_of(resumed), weights_of(plain))
    assert_close(resumed_ema.get_state()["average"],
                 plain_ema.get_state()["average"])
    assert resumed_monitor.steps == plain_monitor.steps
    np.testing.assert_allclose(resumed_monitor.losses, plain_monitor.losses,
                               rtol=1e-5)
