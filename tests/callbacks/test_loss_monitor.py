import math

import keras
import numpy as np
import pytest

from keras_trainopt import BackupAndRestore
from keras_trainopt import LossMonitor
from keras_trainopt._internal import loss_buffer
from keras_trainopt.diagnostics import loss_curve
from tests import tb
from tests.callbacks.helpers import needs_steps_per_execution


def linear_problem(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    w = np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    return x, x @ w + 0.1 * rng.normal(size=(n, 1)).astype("float32")


def linear_model(lr, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(lr), loss="mse")
    return model


class WeightRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.before = []

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append([np.array(w) for w in self.model.get_weights()])


def test_batch_losses_equal_an_independent_computation(tmp_path):
    x, y = linear_problem(n=64)
    model = linear_model(0.05)
    recorder = WeightRecorder()
    monitor = LossMonitor(str(tmp_path), every=1, verbose=0)
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False,
              callbacks=[recorder, monitor], verbose=0)
    expected = []
    for i, (kernel, bias) in enumerate(recorder.before):
        b = i % 4
        xb, yb = x[16 * b:16 * (b + 1)], y[16 * b:16 * (b + 1)]
        expected.append(float(np.mean((xb @ kernel + bias - yb) ** 2)))
    assert monitor.steps == list(range(1, 9))
    np.testing.assert_allclose(monitor.losses, expected, rtol=1e-4)
    assert monitor.learning_rates == pytest.approx([0.05] * 8)
    written = tb.scalars(str(tmp_path / "monitors"), "loss_monitor/batch_loss")
    assert [s for s, _ in written] == list(range(1, 9))
    np.testing.assert_allclose([v for _, v in written], expected, rtol=1e-4)


def test_every_n_reads_mean_of_the_span():
    x, y = linear_problem(n=64)
    fine, coarse = LossMonitor(every=1, verbose=0), LossMonitor(every=2,
                                                                 verbose=0)
    linear_model(0.05).fit(x, y, batch_size=8, epochs=1, shuffle=False,
                           callbacks=[fine], verbose=0)
    linear_model(0.05).fit(x, y, batch_size=8, epochs=1, shuffle=False,
                           callbacks=[coarse], verbose=0)
    assert coarse.steps == [2, 4, 6, 8]
    pairs = np.asarray(fine.losses).reshape(4, 2).mean(axis=1)
    np.testing.assert_allclose(coarse.losses, pairs, rtol=1e-4)


def test_divergence_stops_and_restores_weights():
    x, y = linear_problem()
    model = linear_model(5.0)  # far above 2 / lambda_max for this problem
    start = [np.array(w) for w in model.get_weights()]
    monitor = LossMonitor(every=1, restore_weights=True, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=50, callbacks=[monitor],
                        verbose=0)
    assert len(history.epoch) <= 2  # stopped at once, not after 50 epochs
    assert monitor.diagnosis == "learning_rate_too_high"
    assert monitor.diverged_at_step is not None
    assert "restored" in monitor.reason
    for got, want in zip(model.get_weights(), start, strict=True):
        np.testing.assert_array_equal(got, want)
        assert np.all(np.isfinite(got))


def test_nan_loss_is_caught_at_once():
    x, y = linear_problem()
    y[40] = np.nan
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.01).fit(x, y, batch_size=16, epochs=3, shuffle=False,
                           callbacks=[monitor], verbose=0)
    assert monitor.diverged_at_step == 3  # the batch holding sample 40
    assert monitor.diagnosis == "learning_rate_too_high"
    assert "nan" in monitor.reason


@pytest.mark.parametrize("lr", [3e-3, 1e-5])
def test_too_low_learning_rate_is_diagnosed(lr):
    # Full-batch gradient descent: with lr 3e-3 the loss falls slowly and
    # almost linearly; with 1e-5 it barely moves.
    x, y = linear_problem()
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(lr).fit(x, y, batch_size=256, epochs=40,
                         callbacks=[monitor], verbose=0)
    assert monitor.diagnosis == "learning_rate_too_low", monitor.reason


def test_good_learning_rate_is_diagnosed_good():
    x, y = linear_problem()
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.05).fit(x, y, batch_size=16, epochs=4, callbacks=[monitor],
                           verbose=0)
    assert monitor.diagnosis == "good", monitor.reason


def test_state_round_trip():
    x, y = linear_problem(n=64)
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.05).fit(x, y, batch_size=16, epochs=1, callbacks=[monitor],
                           verbose=0)
    fresh = LossMonitor(verbose=0)
    fresh.set_state(monitor.get_state())
    assert fresh.get_state() == monitor.get_state()


_LOSS_CURVE_PATTERN = loss_curve.loss_curve_pattern  # never the counted one


@pytest.fixture
def judged_lengths(monkeypatch):
    """The lengths of the curves the monitor judges, in order."""
    lengths = []

    def counted(losses, **kwargs):
        lengths.append(len(losses))
        return _LOSS_CURVE_PATTERN(losses, **kwargs)

    monkeypatch.setattr(loss_curve, "loss_curve_pattern", counted)
    return lengths


def _judge_here(monitor):
    """`(pattern, reason)` of `monitor`'s readings, judged directly."""
    return _LOSS_CURVE_PATTERN(
        monitor.losses, chance_loss=monitor.chance_level,
        min_steps=monitor.min_steps,
        oscillation_threshold=monitor.oscillation_threshold,
        linearity_threshold=monitor.linearity_threshold)


def test_the_curve_is_judged_once_when_read(judged_lengths):
    # Judging the shape is a pass over every reading: done at every epoch's
    # end, it grew with the run (issue 21). It is done when the verdict is
    # read, from the readings up to the latest epoch's end.
    x, y = linear_problem()
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.05).fit(x, y, batch_size=16, epochs=4, callbacks=[monitor],
                           verbose=0)
    assert judged_lengths == []
    pattern, reason = _judge_here(monitor)
    assert (monitor.pattern, monitor.reason) == (pattern, reason)
    assert monitor.diagnosis == loss_curve.PATTERN_VERDICTS[pattern]
    assert judged_lengths == [len(monitor.losses)] == [64]


def test_a_backup_leaves_the_judging_to_the_read(judged_lengths):
    # BackupAndRestore takes get_state() at every backup: the judgement
    # travels in the state as still to be done, and a restored monitor
    # judges the same readings when read.
    x, y = linear_problem()
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.05).fit(x, y, batch_size=16, epochs=2, callbacks=[monitor],
                           verbose=0)
    state = monitor.get_state()
    assert judged_lengths == []
    restored = LossMonitor(every=1, verbose=0)
    restored.set_state(state)
    pattern, reason = _judge_here(monitor)
    assert (restored.pattern, restored.reason) == (pattern, reason)
    assert judged_lengths == [len(monitor.losses)] == [32]


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(every=0), ValueError, "every"),
        (dict(divergence_threshold=1.0), ValueError, "divergence_threshold"),
        (dict(divergence_threshold=math.nan), ValueError,
         "divergence_threshold"),
        (dict(min_steps=True), TypeError, "min_steps"),
        (dict(restore_weights="yes"), TypeError, "restore_weights"),
        (dict(oscillation_threshold=0), ValueError, "oscillation_threshold"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        LossMonitor(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("log_dir", [5, "", "a\x00b", b"logs"])
def test_log_dir_is_checked_when_built(log_dir):
    # before: accepted; `fit` failed in os.fspath (5) or os.makedirs (NUL),
    # or "" wrote the event files into the working folder
    with pytest.raises((TypeError, ValueError), match=r"`log_dir` must be"):
        LossMonitor(log_dir)


def test_log_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "events"
    file.write_text("")
    with pytest.raises(ValueError, match=r"`log_dir` must be a folder"):
        LossMonitor(file)


# -- issue 18 ------------------------------------------------------------------


def digits_mlp(optimizer, seed=0):
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, x[:1200], y[:1200]


def test_a_blow_up_then_a_plateau_at_chance_is_a_rate_too_high():
    # the run: the loss jumps to ~7, then sits near ln(10)
    pytest.importorskip("sklearn")
    from keras_trainopt import nesterov_sgd

    model, x, y = digits_mlp(nesterov_sgd(3.0, momentum=0.9))
    monitor = LossMonitor(verbose=0)
    model.fit(x, y, epochs=6, batch_size=32, callbacks=[monitor], verbose=0)
    assert monitor.chance_level == pytest.approx(math.log(10))
    assert monitor.diagnosis == "learning_rate_too_high", monitor.reason
    assert monitor.pattern == "blow_up"
    assert max(monitor.losses) > 2 * math.log(10)
    # the sentence quotes the recent raw mean, not a smoothed value
    tail = max(3, len(monitor.losses) // 10)
    recent = float(np.mean(monitor.losses[-tail:]))
    assert f"stayed at {recent:.4g}" in monitor.reason
    # without a chance level the same curve cannot be told from a good one
    model, x, y = digits_mlp(nesterov_sgd(3.0, momentum=0.9))
    blind = LossMonitor(verbose=0, chance_loss=None)
    model.fit(x, y, epochs=6, batch_size=32, callbacks=[blind], verbose=0)
    assert blind.chance_level is None and blind.pattern != "blow_up"


def test_a_good_curve_quotes_the_recent_raw_loss():
    pytest.importorskip("sklearn")
    model, x, y = digits_mlp(keras.optimizers.Adam(3e-3))
    monitor = LossMonitor(verbose=0)
    model.fit(x, y, epochs=6, batch_size=32, callbacks=[monitor], verbose=0)
    assert monitor.diagnosis == "good", monitor.reason
    tail = max(3, len(monitor.losses) // 10)
    recent = float(np.mean(monitor.losses[-tail:]))
    first = float(np.mean(monitor.losses[:3]))
    assert monitor.reason.startswith(
        f"the loss fell from {first:.4g} to {recent:.4g} (recent mean)")
    assert monitor.recent_loss == pytest.approx(recent)


def test_a_nan_from_a_healthy_level_is_told_from_a_divergence():
    x, y = linear_problem(n=64)
    x[40, 0] = np.nan  # bad data, at a good rate
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.05).fit(x, y, batch_size=8, epochs=1, shuffle=False,
                           callbacks=[monitor], verbose=0)
    assert monitor.pattern == "non_finite"
    assert "look for NaN or inf in the data" in monitor.reason
    monitor = LossMonitor(every=1, verbose=0)
    x, y = linear_problem()
    linear_model(10.0).fit(x, y, batch_size=8, epochs=3, callbacks=[monitor],
                           verbose=0)
    assert monitor.pattern == "diverged"


def test_chance_loss_is_checked():
    with pytest.raises(ValueError, match="chance_loss"):
        LossMonitor(chance_loss=-1.0)
    with pytest.raises(TypeError, match="chance_loss"):
        LossMonitor(chance_loss="ln10")


# -- the readings the train step records (`_internal.loss_buffer`) ------------


def schedule_model(steps_per_execution=1, seed=0):
    """A linear model whose learning rate falls every update (a schedule)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    rate = keras.optimizers.schedules.ExponentialDecay(
        0.05, decay_steps=1, decay_rate=0.99)
    model.compile(keras.optimizers.SGD(rate), loss="mse",
                  steps_per_execution=steps_per_execution)
    return model


def batch_losses(x, y, batch_size, epochs):
    """The loss of each update, from a plain run with `train_on_batch`."""
    model = schedule_model()
    losses = []
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            logs = model.train_on_batch(
                x[start:start + batch_size], y[start:start + batch_size],
                return_dict=True)
            losses.append(float(logs["loss"]))
    return losses


def expected_readings(losses, every, steps_per_epoch):
    """A reading per `every` updates and at each epoch's end: (step, mean)."""
    steps, means, last = [], [], 0
    for step in range(1, len(losses) + 1):
        if step - last >= every or step % steps_per_epoch == 0:
            steps.append(step)
            means.append(float(np.mean(losses[last:step])))
            last = step
    return steps, means


@pytest.mark.parametrize(
    "every, steps_per_execution",
    [(1, 1), pytest.param(3, 1, marks=pytest.mark.slow),
     pytest.param(3, 4, marks=needs_steps_per_execution),
     pytest.param(5, 2, marks=[needs_steps_per_execution, pytest.mark.slow])],
)  # (3, 1) and (5, 2) are `slow` (.ci/run): the default run keeps 1/1 and 3/4
def test_readings_match_train_on_batch_losses(every, steps_per_execution,
                                             monkeypatch):
    # 80 updates per epoch: more than a buffer sized for reads every 40
    # steps holds, so it is read (and wraps around) in the middle of the
    # epoch; no time floor between reads (steps here take a millisecond)
    monkeypatch.setattr(loss_buffer, "MAX_READ_SPAN", 40)
    monkeypatch.setattr(loss_buffer, "MIN_READ_SECONDS", 0.0)
    x, y = linear_problem(n=640)
    losses = batch_losses(x, y, batch_size=8, epochs=2)
    monitor = LossMonitor(every=every, verbose=0)
    schedule_model(steps_per_execution).fit(
        x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[monitor],
        verbose=0)
    steps, means = expected_readings(losses, every, steps_per_epoch=80)
    assert monitor.steps == steps
    # a difference of the tracker's float32 running totals (up to ~2000)
    np.testing.assert_allclose(monitor.losses, means, rtol=1e-4, atol=1e-4)
    # the rate of the next update: the schedule's value at the step count
    np.testing.assert_allclose(
        monitor.learning_rates, [0.05 * 0.99 ** s for s in steps], rtol=1e-5)


def test_readings_at_the_default_pacing_match_train_on_batch_losses():
    x, y = linear_problem(n=640)
    losses = batch_losses(x, y, batch_size=8, epochs=2)
    monitor = LossMonitor(every=1, verbose=0)
    schedule_model().fit(x, y, batch_size=8, epochs=2, shuffle=False,
                         callbacks=[monitor], verbose=0)
    steps, means = expected_readings(losses, 1, steps_per_epoch=80)
    assert monitor.steps == steps
    np.testing.assert_allclose(monitor.losses, means, rtol=1e-4, atol=1e-4)


def test_a_nan_stops_training_within_the_read_span(monkeypatch):
    # the span in steps: no time floor between reads (see the next test)
    monkeypatch.setattr(loss_buffer, "MIN_READ_SECONDS", 0.0)
    x, y = linear_problem(n=2000)
    y[400] = np.nan  # in update 51 of 250
    counter = BatchCounter()
    monitor = LossMonitor(every=1, verbose=0)
    linear_model(0.01).fit(x, y, batch_size=8, epochs=1, shuffle=False,
                           callbacks=[monitor, counter], verbose=0)
    assert monitor.diverged_at_step == 51
    # read at least every READ_SPAN updates (on JAX a read takes what the
    # previous one copied): stopped well before the end, every update read
    spans = 2 if keras.backend.backend() == "jax" else 1
    assert 51 <= counter.batches <= 51 + spans * loss_buffer.READ_SPAN
    assert monitor.steps == list(range(1, counter.batches + 1))
    assert np.isnan(monitor.losses[50:]).all()


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def test_readings_resume_at_the_same_steps_after_an_epoch_backup(tmp_path):
    # BackupAndRestore after the monitor restores the step count after the
    # monitor's train begin; the next reading still ends `every` updates
    # after the restored count (it came 1 update after it)
    x, y = linear_problem(n=72)  # 9 steps an epoch: readings at 5, 9, 14

    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    def train(folder, stop=False):
        model = linear_model(0.05)
        monitor = LossMonitor(every=5, verbose=0)
        backup = BackupAndRestore(folder)
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                  callbacks=[monitor, backup, *([StopAt()] if stop else [])])
        return monitor

    plain = train(tmp_path / "plain")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "stopped", stop=True)
    resumed = train(tmp_path / "stopped")
    assert plain.steps == [5, 9, 14, 18, 23, 27]
    assert resumed.steps == plain.steps
    np.testing.assert_allclose(resumed.losses, plain.losses, rtol=1e-5)
