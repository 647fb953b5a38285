"""Every public callback, `find_learning_rate` and `nesterov_sgd` under
`mixed_float16`.

Under that policy `compile` wraps the optimizer in a `LossScaleOptimizer`
(or the user does). What Keras 3.15 does there, and the callbacks rely on
(`test_keras_loss_scaling_facts` pins it down):

- the weights are float32 variables (the "master" weights); layers compute
  in float16;
- the wrapper's `iterations` and `learning_rate` are the inner optimizer's;
  its own iteration variable is never advanced;
- a step whose gradients are not finite is skipped: no weight, no inner
  optimizer variable and no inner `iterations` changes, and the loss scale
  is halved.

A step is forced to be skipped by `spiky_mse`, the mean squared error plus
`flag * 1e6 * (y_pred - stop_gradient(y_pred))`: zero in the forward pass, so
the loss is the plain MSE, but in batches flagged in `y` the gradient
overflows float16 once scaled. Batches 2 and 7 of each epoch are flagged:
with 8 batches per epoch and 3 epochs, steps 2, 7, 10, 15, 18 and 23 are
skipped, among them the last step of every epoch.

Expected values are computed here from recorded float32 weights, the inner
optimizer's `iterations` and `learning_rate`, and closed forms in plain
Python, never from the code under test.
"""

import math
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainopt import ActivationMonitor
from keras_trainopt import CheckpointEnsemble
from keras_trainopt import ExponentialDecay
from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import InverseTimeDecay
from keras_trainopt import LossMonitor
from keras_trainopt import OverfittingMonitor
from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from keras_trainopt import StochasticWeightAveraging
from keras_trainopt import TrainingDoctor
from keras_trainopt import UpdateRatioLogger
from keras_trainopt import find_learning_rate
from keras_trainopt import nesterov_sgd
from tests.callbacks.helpers import global_policy

LR0 = 0.05
BATCH = 4
STEPS_PER_EPOCH = 8
EPOCHS = 3
FLAGGED_BATCHES = (2, 7)
SKIPPED = [
    e * STEPS_PER_EPOCH + b for e in range(EPOCHS) for b in FLAGGED_BATCHES
]
KINDS = ("auto", "explicit")
# The default run trains the explicitly wrapped optimizer once (the
# `swa_rate` run of the two tests that keep KINDS); its other cells, each a
# training run of its own, are `slow` (`.ci/run` runs them).
KINDS_FAST = ("auto", pytest.param("explicit", marks=pytest.mark.slow))


@pytest.fixture
def mixed_float16():
    with global_policy("mixed_float16"):
        yield


def spiky_mse(y_true, y_pred):
    target, flag = y_true[:, :1], y_true[:, 1:]
    y_pred = ops.cast(y_pred, "float32")
    error = ops.mean(ops.square(y_pred - target), axis=-1)
    spike = flag * 1e6 * (y_pred - ops.stop_gradient(y_pred))
    return error + ops.mean(spike, axis=-1)


def data(n=BATCH * STEPS_PER_EPOCH, flagged=FLAGGED_BATCHES, seed=0):
    rng = np.random.default_rng(seed)
    x = (0.5 * rng.normal(size=(n, 4))).astype("float32")
    target = x @ np.array([[0.1], [-0.2], [0.05], [0.4]], "float32")
    flag = np.zeros((n, 1), "float32")
    for batch in flagged:
        flag[batch * BATCH:(batch + 1) * BATCH] = 1.0
    return x, np.concatenate([target, flag], axis=1)


X_PROBE = data(8, flagged=(), seed=2)[0]


def make_optimizer(kind, inner, initial_scale):
    if kind == "explicit":
        return keras.optimizers.LossScaleOptimizer(
            inner, initial_scale=initial_scale
        )
    return inner  # compile wraps it (initial scale 2**15)


def build_model(kind, inner=None, initial_scale=2.0**12, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(
        make_optimizer(kind, inner or keras.optimizers.SGD(LR0), initial_scale),
        loss=spiky_mse,
    )
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    return model


def _read(variable):
    return np.array(ops.convert_to_numpy(variable.value))


def _sync(model):
    sync = getattr(model, "jax_state_sync", None)  # JAX: mid-epoch state
    if sync is not None:
        sync()


class Recorder(keras.callbacks.Callback):
    """After every batch: the float32 weights, the inner optimizer's
    iterations and learning rate (the rate of the next update), the batch
    loss (from Keras' running mean), and the loss scale."""

    def on_train_begin(self, logs=None):
        self.weights, self.iterations, self.rates = [], [], []
        self.losses, self.scales, self.epochs = [], [], []
        self.epoch_ends, self.epoch_end_iterations = [], []
        self.initial = self._weights()

    def _weights(self):
        _sync(self.model)
        return [_read(v) for v in self.model.weights]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._mean = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self._weights())
        inner = self.model.optimizer.inner_optimizer
        self.iterations.append(int(_read(inner.iterations)))
        self.rates.append(float(_read(inner.learning_rate)))
        self.scales.append(float(_read(self.model.optimizer.dynamic_scale)))
        self.epochs.append(self.epoch)
        mean = float(logs["loss"])  # equal batches: recover each batch loss
        self.losses.append((batch + 1) * mean - batch * self._mean)
        self._mean = mean

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self._weights())
        self.epoch_end_iterations.append(self.iterations[-1])

    def skipped(self):
        before = [0] + self.iterations[:-1]
        return [k for k, (a, b) in enumerate(zip(before, self.iterations, strict=True))
                if a == b]

    def trajectory(self):
        """The weights after 0, 1, 2, ... applied updates."""
        points = [self.initial]
        for k, it in enumerate(self.iterations):
            if it == len(points):
                points.append(self.weights[k])
        return points


def run_factories():
    return {
        "step_decay_step": lambda: {
            "decay": StepDecay(factor=0.5, every=4, unit="step"),
            "ema1": ExponentialMovingAverage(0.9, every=1, apply_at_end=False),
            "checkpoints": CheckpointEnsemble(every=1, keep=2),
            "loss1": LossMonitor(every=1, verbose=0),
            "ratio1": UpdateRatioLogger(every=1, verbose=0),
            "fit": OverfittingMonitor("loss", restore_best_weights=True,
                                      verbose=0),
            "activations": ActivationMonitor(X_PROBE, verbose=0),
        },
        "exponential_decay_step": lambda: {
            "decay": ExponentialDecay(decay=0.05, unit="step"),
            "ema3": ExponentialMovingAverage(0.9, every=3, apply_at_end=False),
            "swa": StochasticWeightAveraging(start_epoch=1, apply_at_end=False),
            "loss4": LossMonitor(every=4, verbose=0),
            "ratio4": UpdateRatioLogger(every=4, verbose=0),
        },
        "inverse_time_decay_step": lambda: {
            "decay": InverseTimeDecay(decay=0.1, unit="step"),
            "doctor": TrainingDoctor(x_probe=X_PROBE, metric="loss", every=1,
                                     update_ratio_every=1, verbose=0),
        },
        "step_decay_epoch": lambda: {"decay": StepDecay(factor=0.5, every=1)},
        "exponential_decay_epoch": lambda: {
            "decay": ExponentialDecay(decay=0.3)},
        "inverse_time_decay_epoch": lambda: {
            "decay": InverseTimeDecay(decay=0.7)},
        "snapshot": lambda: {"snapshots": SnapshotEnsemble(cycles=3)},
        "swa_rate": lambda: {
            "swa": StochasticWeightAveraging(start_epoch=1,
                                             swa_learning_rate=0.01)},
    }


class Run:
    def __init__(self, model, callbacks, recorder, history):
        self.model = model
        self.callbacks = callbacks
        self.recorder = recorder
        self.history = history.history
        # everything read from variables is read now, as NumPy
        self.averages = {
            name: cb.averaged_weights() for name, cb in callbacks.items()
            if hasattr(cb, "averaged_weights")
        }
        self.counts = {
            name: (cb.num_averaged, cb.num_skipped)
            for name, cb in callbacks.items() if hasattr(cb, "num_averaged")
        }
        self.final = [_read(v) for v in model.weights]


_RUNS = {}


def run(name, kind):
    """Trains once per (callbacks, optimizer kind); the tests share it."""
    key = (name, kind)
    if key not in _RUNS:
        callbacks = run_factories()[name]()
        model = build_model(kind)
        recorder = Recorder()
        x, y = data()
        xv, yv = data(8, flagged=(), seed=1)
        history = model.fit(
            x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
            validation_data=(xv, yv),
            callbacks=[*callbacks.values(), recorder],
        )
        result = Run(model, callbacks, recorder, history)
        # the scenario itself: exactly the flagged steps were skipped, and
        # they changed no weight
        assert recorder.skipped() == SKIPPED
        for k in SKIPPED:
            for a, b in zip(recorder.weights[k], recorder.weights[k - 1], strict=True):
                np.testing.assert_array_equal(a, b)
        _RUNS[key] = result
    return _RUNS[key]


def assert_close(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=atol)


# -- Keras' loss scaling ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_keras_loss_scaling_facts(mixed_float16, kind):
    result = run("swa_rate", kind)
    model, recorder = result.model, result.recorder
    optimizer = model.optimizer
    assert all(w.dtype == np.float32 for w in recorder.initial)
    assert model.layers[0].compute_dtype == "float16"
    assert _read(optimizer.iterations) == recorder.iterations[-1]
    assert int(_read(optimizer._iterations)) == 0  # the wrapper's own
    assert recorder.iterations[-1] == EPOCHS * STEPS_PER_EPOCH - len(SKIPPED)
    initial = 2.0**15 if kind == "auto" else 2.0**12
    assert recorder.scales[-1] == initial / 2 ** len(SKIPPED)


# -- learning-rate decay ------------------------------------------------------

LR_CLOSED = {
    "step_decay_step": lambda t: LR0 * 0.5 ** (t // 4),
    "exponential_decay_step": lambda t: LR0 * math.exp(-0.05 * t),
    "inverse_time_decay_step": lambda t: LR0 / (1 + 0.1 * t),
    "step_decay_epoch": lambda e: LR0 * 0.5**e,
    "exponential_decay_epoch": lambda e: LR0 * math.exp(-0.3 * e),
    "inverse_time_decay_epoch": lambda e: LR0 / (1 + 0.7 * e),
}


@pytest.mark.parametrize("kind", KINDS_FAST)
@pytest.mark.parametrize("name", [n for n in LR_CLOSED if n.endswith("step")])
def test_step_decay_counts_applied_updates(mixed_float16, name, kind):
    recorder = run(name, kind).recorder
    closed = LR_CLOSED[name]
    # between steps the inner optimizer holds the rate of the next update,
    # lr(t) for t updates applied; a skipped step leaves it as it was
    for it, rate in zip(recorder.iterations, recorder.rates, strict=True):
        assert rate == pytest.approx(closed(it), rel=1e-6)
    for k in SKIPPED:
        assert recorder.rates[k] == recorder.rates[k - 1]


@pytest.mark.parametrize("name", [n for n in LR_CLOSED if n.endswith("epoch")])
def test_epoch_decay_sets_the_inner_rate(mixed_float16, name):
    # set from the host between epochs, through the same unwrapping as the
    # step unit: the compile-wrapped optimizer is enough
    result = run(name, "auto")
    closed = LR_CLOSED[name]
    for epoch, rate in zip(result.recorder.epochs, result.recorder.rates, strict=True):
        assert rate == pytest.approx(closed(epoch), rel=1e-6)
    assert result.history["learning_rate"] == pytest.approx(
        [closed(e) for e in range(EPOCHS)], rel=1e-6
    )


# -- weight averages ----------------------------------------------------------


def numpy_ema(trajectory, decay, every):
    """TensorFlow's warm-up EMA over every `every`-th applied update."""
    average = [w.astype("float64") for w in trajectory[0]]
    n = 0
    for step in range(every, len(trajectory), every):
        s = n * every
        d = min(decay, (1 + s) / (10 + s)) ** every
        average = [d * a + (1 - d) * w for a, w in zip(average, trajectory[step],
                                                       strict=True)]
        n += 1
    return average, n


@pytest.mark.parametrize("kind", KINDS_FAST)
@pytest.mark.parametrize(
    "name, key, every",
    [("step_decay_step", "ema1", 1), ("exponential_decay_step", "ema3", 3)],
)
def test_ema_averages_the_float32_weights_of_applied_updates(
    mixed_float16, name, key, every, kind
):
    result = run(name, kind)
    trajectory = result.recorder.trajectory()
    assert len(trajectory) - 1 == result.recorder.iterations[-1]
    expected, n = numpy_ema(trajectory, 0.9, every)
    assert result.counts[key] == (n, 0)
    assert all(a.dtype == np.float32 for a in result.averages[key])
    assert_close(result.averages[key], expected)


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_swa_averages_every_epoch_even_when_its_last_step_is_skipped(
    mixed_float16, kind
):
    # the last step of every epoch is skipped: the in-step average never
    # sees the update count that ends the epoch
    result = run("exponential_decay_step", kind)
    ends = result.recorder.epoch_ends[1:]  # start_epoch=1
    expected = [np.mean([end[i] for end in ends], axis=0)
                for i in range(len(ends[0]))]
    assert result.counts["swa"] == (len(ends), 0)
    assert_close(result.averages["swa"], expected)


@pytest.mark.parametrize("kind", KINDS)
def test_swa_rate_and_average_at_end(mixed_float16, kind):
    result = run("swa_rate", kind)
    recorder, swa = result.recorder, result.callbacks["swa"]
    for epoch, rate in zip(recorder.epochs, recorder.rates, strict=True):
        assert rate == pytest.approx(LR0 if epoch == 0 else 0.01, rel=1e-6)
    ends = recorder.epoch_ends[1:]
    expected = [np.mean([end[i] for end in ends], axis=0)
                for i in range(len(ends[0]))]
    assert result.counts["swa"] == (2, 0)
    assert_close(result.final, expected)  # apply_at_end
    assert_close(swa.raw_weights(), recorder.epoch_ends[-1], atol=0)


# -- ensembles ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_snapshot_cycles_count_applied_updates(mixed_float16, kind):
    result = run("snapshot", kind)
    recorder, snapshots = result.recorder, result.callbacks["snapshots"]
    length = math.ceil(EPOCHS * STEPS_PER_EPOCH / 3)
    assert snapshots.cycle_steps == length
    # set before each update only: between steps the rate of the last
    # applied update, t = iterations - 1
    for it, rate in zip(recorder.iterations, recorder.rates, strict=True):
        t = it - 1
        expected = LR0 / 2 * (math.cos(math.pi * (t % length) / length) + 1)
        assert rate == pytest.approx(expected, rel=1e-5, abs=1e-9)
    # a snapshot at the first batch end at which the applied updates cross
    # a multiple of the cycle length, and one after the last step
    expected_at, previous = [], 0
    for k, it in enumerate(recorder.iterations):
        if it // length > previous // length or k == len(recorder.weights) - 1:
            expected_at.append(k)
        previous = it
    assert snapshots.snapshot_steps == [
        recorder.iterations[k] for k in expected_at
    ]
    assert snapshots.snapshot_steps == [8, 16, 18]
    for snapshot, k in zip(snapshots.snapshots, expected_at, strict=True):
        assert_close(snapshot, recorder.weights[k], atol=0)


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_checkpoints_are_float32_epoch_ends(mixed_float16, kind):
    result = run("step_decay_step", kind)
    recorder, checkpoints = result.recorder, result.callbacks["checkpoints"]
    assert checkpoints.snapshot_steps == recorder.epoch_end_iterations[-2:]
    for snapshot, end in zip(checkpoints.snapshots, recorder.epoch_ends[-2:],
                             strict=True):
        assert all(w.dtype == np.float32 for w in snapshot)
        assert_close(snapshot, end, atol=0)


# -- monitors -----------------------------------------------------------------


def loss_readings(recorder, every):
    """LossMonitor's readings, derived from the recorded batch losses: one
    once `every` updates were applied since the previous reading (or at the
    epoch's last batch if any was), the mean loss of the batches since."""
    steps, losses = [], []
    start = 0
    for epoch in range(EPOCHS):
        batches = [k for k, e in enumerate(recorder.epochs) if e == epoch]
        last_step = recorder.iterations[batches[0] - 1] if batches[0] else 0
        first = batches[0]
        for k in batches:
            it = recorder.iterations[k]
            if it - last_step >= every or (k == batches[-1] and it > last_step):
                steps.append(it)
                losses.append(float(np.mean(recorder.losses[first:k + 1])))
                last_step, first = it, k + 1
        start = batches[-1] + 1
    assert start == len(recorder.iterations)
    return steps, losses


@pytest.mark.parametrize("kind", KINDS_FAST)
@pytest.mark.parametrize(
    "name, key, every",
    [("step_decay_step", "loss1", 1), ("exponential_decay_step", "loss4", 4)],
)
def test_loss_monitor_steps_are_applied_updates(
    mixed_float16, name, key, every, kind
):
    result = run(name, kind)
    recorder, monitor = result.recorder, result.callbacks[key]
    steps, losses = loss_readings(recorder, every)
    assert monitor.steps == steps
    assert len(set(monitor.steps)) == len(monitor.steps)
    np.testing.assert_allclose(monitor.losses, losses, rtol=1e-4)
    rates = {it: rate for it, rate in zip(recorder.iterations, recorder.rates,
                                          strict=True)}
    assert monitor.learning_rates == pytest.approx(
        [rates[s] for s in steps], rel=1e-6
    )


def update_ratios(recorder, step):
    """||w_after - w_before|| / ||w_before|| of the update that made `step`."""
    trajectory = recorder.trajectory()
    before, after = trajectory[step - 1], trajectory[step]
    with np.errstate(divide="ignore"):  # a bias that starts at zero: inf
        return [float(np.linalg.norm(a - b) / np.linalg.norm(b))
                for b, a in zip(before, after, strict=True)]


@pytest.mark.parametrize("kind", KINDS_FAST)
@pytest.mark.parametrize(
    "name, key, every",
    [("step_decay_step", "ratio1", 1), ("exponential_decay_step", "ratio4", 4)],
)
def test_update_ratios_measure_applied_updates_of_float32_weights(
    mixed_float16, name, key, every, kind
):
    result = run(name, kind)
    recorder, logger = result.recorder, result.callbacks[key]
    applied = recorder.iterations[-1]
    expected_steps = [s for s in range(1, applied + 1) if (s - 1) % every == 0]
    keys = ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
    assert [s for s, _ in logger.history["hidden/kernel"]] == expected_steps
    for step in expected_steps:
        expected = update_ratios(recorder, step)
        measured = [dict(logger.history[k])[step] for k in keys]
        np.testing.assert_allclose(measured, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_overfitting_monitor_restores_float32_best_weights(mixed_float16, kind):
    result = run("step_decay_step", kind)
    monitor, history = result.callbacks["fit"], result.history
    gaps = [v - t for t, v in zip(history["loss"], history["val_loss"], strict=True)]
    assert monitor.gaps == pytest.approx(gaps, rel=1e-6)
    best = int(np.argmin(history["val_loss"]))
    assert monitor.best_epoch == best
    assert_close(result.final, result.recorder.epoch_ends[best], atol=0)


def float16_forward(weights, x):
    kernel, bias, out_kernel, out_bias = (
        w.astype("float16") for w in weights
    )
    hidden = np.tanh((x.astype("float16") @ kernel + bias).astype("float32"))
    hidden = hidden.astype("float16")
    return hidden, hidden @ out_kernel + out_bias


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_activation_monitor_probes_the_trained_model(mixed_float16, kind):
    result = run("step_decay_step", kind)
    stats = result.callbacks["activations"].stats
    hidden, out = float16_forward(result.recorder.epoch_ends[-1], X_PROBE)
    for name, values in (("hidden", hidden), ("out", out)):
        values = values.astype("float64")
        assert stats[name]["mean"] == pytest.approx(values.mean(), abs=2e-3)
        assert stats[name]["std"] == pytest.approx(values.std(), abs=2e-3)
    saturated = np.mean(np.abs(hidden.astype("float64")) >= 0.9)
    assert stats["hidden"]["saturated_fraction"] == pytest.approx(saturated)


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_training_doctor_counts_applied_updates(mixed_float16, kind):
    result = run("inverse_time_decay_step", kind)
    recorder, doctor = result.recorder, result.callbacks["doctor"]
    steps, losses = loss_readings(recorder, 1)
    assert doctor.monitors["loss"].steps == steps
    np.testing.assert_allclose(doctor.monitors["loss"].losses, losses,
                               rtol=1e-4)
    applied = recorder.iterations[-1]
    ratios = doctor.monitors["update_ratio"].history["out/kernel"]
    assert [s for s, _ in ratios] == list(range(1, applied + 1))
    assert doctor.monitors["fit"].gaps == pytest.approx(
        [v - t for t, v in zip(result.history["loss"],
                               result.history["val_loss"], strict=True)], rel=1e-6
    )
    assert set(doctor.monitors["activations"].stats) == {"hidden", "out"}
    assert doctor.advice  # a verdict was reached


# -- the helpers outside callbacks --------------------------------------------


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_nesterov_sgd_updates_the_float32_weights(mixed_float16, kind):
    mu = 0.9
    model = build_model(kind, nesterov_sgd(LR0, momentum=mu))
    inner = model.optimizer.inner_optimizer
    assert inner.nesterov and float(_read(inner.learning_rate)) == pytest.approx(
        LR0
    )

    class Momentum(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_train_batch_end(self, batch, logs=None):
            _sync(self.model)
            self.rows.append([_read(m) for m in inner.momentums])

    recorder, momentum = Recorder(), Momentum()
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[recorder, momentum])
    assert recorder.skipped() == SKIPPED[:4]
    previous_w = recorder.initial
    previous_m = [np.zeros_like(w) for w in previous_w]
    for k, (w, m) in enumerate(zip(recorder.weights, momentum.rows, strict=True)):
        if k in SKIPPED:  # nothing moves
            assert_close(w, previous_w, atol=0)
            assert_close(m, previous_m, atol=0)
        else:  # Keras' Nesterov form: w += (1 + mu) m - mu m_prev
            expected = [pw + (1 + mu) * nm - mu * pm
                        for pw, nm, pm in zip(previous_w, m, previous_m, strict=True)]
            assert_close(w, expected, atol=1e-6)
            assert any(np.any(a != b) for a, b in zip(w, previous_w, strict=True))
        previous_w, previous_m = w, m


@pytest.mark.parametrize("kind", KINDS_FAST)
def test_find_learning_rate_applies_every_rate_once(mixed_float16, kind):
    x, y = data(16, flagged=())
    # explicit: at this initial scale the first updates overflow
    model = build_model(kind, initial_scale=2.0**22)
    optimizer = model.optimizer
    inner = optimizer.inner_optimizer
    optimizer.build(model.trainable_variables)
    before = [_read(v) for v in model.weights]
    scale_before = float(_read(optimizer.dynamic_scale))

    calls = []  # (rate used, whether the update was applied)
    original = model.train_on_batch

    def spy(*args, **kwargs):
        count = int(_read(inner.iterations))
        rate = float(_read(inner.learning_rate))
        out = original(*args, **kwargs)
        calls.append((rate, int(_read(inner.iterations)) == count + 1))
        return out

    model.train_on_batch = spy
    steps = 12
    result = find_learning_rate(model, x, y, batch_size=16, lr_min=1e-4,
                                lr_max=0.5, steps=steps)
    del model.train_on_batch
    closed = [1e-4 * (0.5 / 1e-4) ** (i / (steps - 1)) for i in range(steps)]
    assert result.learning_rates == pytest.approx(closed, rel=1e-6)
    applied = [rate for rate, done in calls if done]
    assert applied == pytest.approx(result.learning_rates, rel=1e-6)
    skipped = sum(not done for _, done in calls)
    assert skipped == (0 if kind == "auto" else len(calls) - steps)
    if kind == "explicit":
        assert skipped > 0
    assert not result.stopped_early
    # everything is put back, the loss scale included
    assert_close([_read(v) for v in model.weights], before, atol=0)
    assert int(_read(inner.iterations)) == 0
    assert float(_read(optimizer.dynamic_scale)) == scale_before
    assert float(_read(inner.learning_rate)) == pytest.approx(LR0)


def test_find_learning_rate_gives_up_on_a_step_after_32_skips(mixed_float16):
    # at this scale every update overflows float16 for all 33 tries
    # (32 halvings leave 2**68); the sweep then stops as diverged
    from keras_trainopt.tuning import lr_finder

    x, y = data(16, flagged=())
    model = build_model("explicit", initial_scale=2.0**100)
    model.optimizer.build(model.trainable_variables)  # as the sweep does
    before = [_read(v) for v in model.weights]
    loss, applied = lr_finder._train_step(model, x, y)
    assert not applied and math.isfinite(loss)
    assert float(_read(model.optimizer.dynamic_scale)) == 2.0 ** (100 - 33)
    assert int(_read(model.optimizer.inner_optimizer.iterations)) == 0
    assert_close([_read(v) for v in model.weights], before, atol=0)


def test_backup_save_freq_counts_applied_updates_not_skipped_steps(
    mixed_float16, tmp_path
):
    # issue 20: save_freq=3 counts the inner optimizer's updates. Steps 2
    # and 7 of each 8-step epoch are skipped, so 3 applied updates are
    # reached after 4 steps of an epoch and 3 more after 7 (by step count
    # alone the backups would fall after steps 3 and 6)
    from keras_trainopt import BackupAndRestore

    model = build_model("explicit")
    written = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".npz"))
            written.extend(n for n in names if n not in written)

    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[BackupAndRestore(tmp_path, save_freq=3,
                                          delete_checkpoint=False), Watch()])
    assert written == [
        "epoch-000000.backup.npz",
        "epoch-000000-step-000000004.backup.npz",
        "epoch-000000-step-000000007.backup.npz",
        "epoch-000001-step-000000004.backup.npz",
        "epoch-000001-step-000000007.backup.npz",
    ]
