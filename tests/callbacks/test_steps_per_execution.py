"""Every step-based callback with `steps_per_execution` 3 and 4 against 1.

With `steps_per_execution = k` Keras runs k updates per call of the train
function and calls the batch hooks once per call (with 8 steps per epoch and
k = 3: executions of 3, 3 and 2 steps). The callbacks count updates with
`optimizer.iterations`, never with batch-hook calls, and what they compute
inside the step (rates, averages, update ratios) is exact at every update.
So each run here must equal the run with k = 1: the same weights, averages,
rates and snapshots (within 1e-6), and the step numbers recorded are
optimizer iterations. `LossMonitor`'s readings, which the step records
every `every` updates, are checked against the per-step losses of k = 1.

Decays alone with k > 1 are covered by `test_decay_conformance.py`
(`InverseTimeDecay` only there), and EMA alone by
`test_exponential_moving_average.py`; here the callbacks run together and
are compared across k. Keras' PyTorch trainer refuses
k > 1, so this module skips there.
"""

import keras
import numpy as np
import pytest

from keras_trainopt import CheckpointEnsemble
from keras_trainopt import ExponentialDecay
from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import LossMonitor
from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from keras_trainopt import StochasticWeightAveraging
from keras_trainopt import TrainingDoctor
from keras_trainopt import UpdateRatioLogger
from tests import tb
from tests.callbacks.helpers import needs_steps_per_execution
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import weights_of
from tests.callbacks.test_mixed_precision import mixed_float16  # noqa: F401

pytestmark = needs_steps_per_execution

LR0 = 0.1
BATCH = 8
STEPS = 8  # per epoch
EPOCHS = 3
SPES = (3, 4)


def groups():
    """Callbacks trained together; one learning-rate setter per group."""
    return {
        "step_decay": lambda log_dir: {
            "decay": StepDecay(factor=0.5, every=5, unit="step"),
            "ema1": ExponentialMovingAverage(0.9, every=1, apply_at_end=False),
            "swa": StochasticWeightAveraging(start_epoch=1, apply_at_end=False),
            "loss1": LossMonitor(log_dir, every=1, verbose=0),
            "ratio1": UpdateRatioLogger(every=1, verbose=0),
            "checkpoints": CheckpointEnsemble(every=1, keep=2),
        },
        "exponential_decay": lambda log_dir: {
            "decay": ExponentialDecay(decay=0.05, unit="step"),
            "ema3": ExponentialMovingAverage(0.9, every=3, apply_at_end=False),
            "loss4": LossMonitor(every=4, verbose=0),
            "ratio4": UpdateRatioLogger(every=4, verbose=0),
            "doctor": TrainingDoctor(metric="loss", every=1,
                                     update_ratio_every=4, verbose=0),
        },
        # cycles of 8 end at epoch ends, which end executions for any k
        "snapshot": lambda log_dir: {"snapshots": SnapshotEnsemble(cycles=3)},
        "swa_cyclic": lambda log_dir: {
            "swa": StochasticWeightAveraging(
                start_epoch=1, swa_learning_rate=(0.1, 0.02),
                apply_at_end=False,
            ),
        },
    }


class ExecutionRecorder(keras.callbacks.Callback):
    """At each batch-hook call: iterations, learning rate, weights."""

    def __init__(self):
        super().__init__()
        self.iterations, self.rates, self.weights = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(weights_of(self.model))
        optimizer = self.model.optimizer
        self.iterations.append(
            int(keras.ops.convert_to_numpy(optimizer.iterations))
        )
        self.rates.append(
            float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        )


class Result:
    def __init__(self, model, callbacks, recorder, log_dir):
        self.callbacks = callbacks
        self.recorder = recorder
        self.log_dir = log_dir
        self.weights = weights_of(model)
        self.averages = {
            name: (cb.averaged_weights(), cb.num_averaged)
            for name, cb in callbacks.items() if hasattr(cb, "averaged_weights")
        }


_RUNS = {}


def run(group, spe, tmp_path_factory):
    key = (group, spe)
    if key not in _RUNS:
        log_dir = str(tmp_path_factory.mktemp(f"{group}_{spe}"))
        callbacks = groups()[group](log_dir)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(3, name="hidden"),
            keras.layers.Dense(1, name="out"),
        ])
        model.compile(keras.optimizers.SGD(LR0, momentum=0.5), loss="mse",
                      steps_per_execution=spe)
        x, y = tiny_data(BATCH * STEPS)
        xv, yv = tiny_data(16, seed=1)
        recorder = ExecutionRecorder()
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
                  verbose=0, validation_data=(xv, yv),
                  callbacks=[*callbacks.values(), recorder])
        _RUNS[key] = Result(model, callbacks, recorder, log_dir)
    return _RUNS[key]


def execution_ends(spe):
    """Iterations at the end of each execution: executions restart with
    every epoch, the last one of an epoch possibly shorter."""
    ends = []
    for epoch in range(EPOCHS):
        for end in range(spe, STEPS + spe, spe):
            ends.append(epoch * STEPS + min(end, STEPS))
    return sorted(set(ends))


def assert_close(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=atol)


# k = 3 (executions of 3, 3 and 2 steps) in the default run; k = 4, which
# divides the epoch, under `slow` (`.ci/run`)
@pytest.fixture(params=[SPES[0], *(pytest.param(k, marks=pytest.mark.slow)
                                   for k in SPES[1:])],
                ids=lambda spe: f"spe{spe}")
def spe(request):
    return request.param


@pytest.mark.parametrize("group", list(groups()))
def test_same_weights_and_rates_as_one_step_per_execution(
    group, spe, tmp_path_factory
):
    one = run(group, 1, tmp_path_factory)
    many = run(group, spe, tmp_path_factory)
    assert many.recorder.iterations == execution_ends(spe)
    assert one.recorder.iterations == list(range(1, EPOCHS * STEPS + 1))
    assert_close(many.weights, one.weights)
    # at each execution end: the same rate and weights as after as many
    # updates one at a time
    for it, rate, weights in zip(many.recorder.iterations, many.recorder.rates,
                                 many.recorder.weights, strict=True):
        assert rate == pytest.approx(one.recorder.rates[it - 1], rel=1e-6)
        assert_close(weights, one.recorder.weights[it - 1])


@pytest.mark.parametrize(
    "group, name",
    [("step_decay", "ema1"), ("step_decay", "swa"),
     ("exponential_decay", "ema3"), ("swa_cyclic", "swa")],
)
def test_averages_equal(group, name, spe, tmp_path_factory):
    one = run(group, 1, tmp_path_factory).averages[name]
    many = run(group, spe, tmp_path_factory).averages[name]
    assert many[1] == one[1] > 0
    assert_close(many[0], one[0])


@pytest.mark.parametrize(
    "group, name", [("snapshot", "snapshots"), ("step_decay", "checkpoints")]
)
def test_snapshots_equal(group, name, spe, tmp_path_factory):
    one = run(group, 1, tmp_path_factory).callbacks[name]
    many = run(group, spe, tmp_path_factory).callbacks[name]
    assert many.snapshot_steps == one.snapshot_steps
    assert set(many.snapshot_steps) <= set(execution_ends(spe))
    for a, b in zip(many.snapshots, one.snapshots, strict=True):
        assert_close(a, b)


def expected_loss_readings(per_step_losses, spe, every):
    """LossMonitor's readings with `spe`: once `every` updates passed since
    the previous reading, whatever `spe` (the step records them), and at
    each epoch end, the mean of the per-step losses since then."""
    steps, losses = [], []
    last = 0
    for end in range(1, EPOCHS * STEPS + 1):
        epoch_end = end % STEPS == 0
        if end - last >= every or (epoch_end and end > last):
            steps.append(end)
            losses.append(float(np.mean(per_step_losses[last:end])))
            last = end
    return steps, losses


PER_STEP_LOSSES = {
    "step_decay": lambda result: result.callbacks["loss1"],
    "exponential_decay": lambda result: result.callbacks["doctor"].monitors[
        "loss"
    ],
}


@pytest.mark.parametrize(
    "group, name, every",
    [("step_decay", "loss1", 1), ("exponential_decay", "loss4", 4)],
)
def test_loss_readings_are_execution_means_at_iterations(
    group, name, every, spe, tmp_path_factory
):
    # the per-step losses: a LossMonitor(every=1) of the run with k = 1
    per_step = PER_STEP_LOSSES[group](run(group, 1, tmp_path_factory))
    assert per_step.steps == list(range(1, EPOCHS * STEPS + 1))
    one = run(group, 1, tmp_path_factory).callbacks[name]
    monitor = run(group, spe, tmp_path_factory).callbacks[name]
    steps, losses = expected_loss_readings(per_step.losses, spe, every)
    assert monitor.steps == steps
    np.testing.assert_allclose(monitor.losses, losses, rtol=1e-5)
    rate_at = dict(zip(range(1, EPOCHS * STEPS + 1),
                       run(group, 1, tmp_path_factory).recorder.rates, strict=True))
    assert monitor.learning_rates == pytest.approx(
        [rate_at[s] for s in steps], rel=1e-6
    )
    assert one.steps == expected_loss_readings(per_step.losses, 1, every)[0]


def test_loss_tensorboard_description_says_what_a_point_is(tmp_path_factory):
    result = run("step_decay", 3, tmp_path_factory)
    metadata = tb.load(result.log_dir + "/monitors").SummaryMetadata(
        "loss_monitor/batch_loss"
    )
    assert "every 1 optimizer update" in metadata.summary_description
    assert "mean" in metadata.summary_description


def measured_steps(every):
    """Steps (iterations after the update) of the measured updates: every
    one is kept, whatever `steps_per_execution`."""
    return [t + 1 for t in range(EPOCHS * STEPS) if t % every == 0]


@pytest.mark.parametrize(
    "group, name, every",
    [("step_decay", "ratio1", 1), ("exponential_decay", "ratio4", 4)],
)
def test_update_ratios_are_of_single_updates(
    group, name, every, spe, tmp_path_factory
):
    one = run(group, 1, tmp_path_factory).callbacks[name]
    logger = run(group, spe, tmp_path_factory).callbacks[name]
    assert [s for s, _ in one.history["out/kernel"]] == measured_steps(every)
    expected_steps = measured_steps(every)
    for key, rows in logger.history.items():
        assert [s for s, _ in rows] == expected_steps
        reference = dict(one.history[key])
        np.testing.assert_allclose(
            [v for _, v in rows], [reference[s] for s in expected_steps],
            rtol=1e-4,
        )


def test_training_doctor_equals_its_monitors(spe, tmp_path_factory):
    one = run("exponential_decay", 1, tmp_path_factory).callbacks["doctor"]
    doctor = run("exponential_decay", spe, tmp_path_factory).callbacks["doctor"]
    loss = doctor.monitors["loss"]
    steps, losses = expected_loss_readings(one.monitors["loss"].losses, spe, 1)
    assert loss.steps == steps
    np.testing.assert_allclose(loss.losses, losses, rtol=1e-5)
    ratios = doctor.monitors["update_ratio"].history["out/kernel"]
    assert [s for s, _ in ratios] == measured_steps(4)
    assert doctor.monitors["fit"].gaps == pytest.approx(
        one.monitors["fit"].gaps, rel=1e-5, abs=1e-7
    )
    assert [a.message for a in doctor.advice] == [
        a.message for a in one.advice
    ]


def test_snapshot_warns_when_a_cycle_ends_inside_an_execution():
    # 24 steps in 3 epochs of 8, cycles of 12: the first ends 4 steps into
    # epoch 1, inside the execution of steps 3 to 6 (12 is a multiple of 3,
    # but executions restart with every epoch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(LR0), loss="mse", steps_per_execution=3)
    x, y = tiny_data(BATCH * STEPS)
    snapshots = SnapshotEnsemble(cycles=2)
    with pytest.warns(UserWarning, match=r"first after step 12"):
        model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False,
                  verbose=0, callbacks=[snapshots])
    assert snapshots.cycle_steps == 12
    # taken at the end of the execution holding step 12, then at the end
    assert snapshots.snapshot_steps == [14, 24]


# -- mixed precision with steps_per_execution ----------------------------------


def mixed_precision_run(spe, rate_setter="decay"):
    """`mixed_float16` with skipped steps (6 of 24, `test_mixed_precision`'s
    overflowing batches), the step callbacks, k updates per execution.

    One callback sets the learning rate (`rate_setter`: "decay" or
    "snapshots"), as `fit` allows only one.
    """
    from tests.callbacks.test_mixed_precision import BATCH as MP_BATCH
    from tests.callbacks.test_mixed_precision import data
    from tests.callbacks.test_mixed_precision import spiky_mse

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="out"),
    ])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.5), loss=spiky_mse,
                  steps_per_execution=spe)
    setters = {
        "decay": lambda: StepDecay(0.05, factor=0.5, every=5, unit="step"),
        "snapshots": lambda: SnapshotEnsemble(cycles=3),
    }
    callbacks = {
        rate_setter: setters[rate_setter](),
        "ema1": ExponentialMovingAverage(0.9, every=1, apply_at_end=False),
        "ema3": ExponentialMovingAverage(0.9, every=3, apply_at_end=False),
    }
    x, y = data()
    model.fit(x, y, batch_size=MP_BATCH, epochs=3, shuffle=False, verbose=0,
              callbacks=list(callbacks.values()))
    inner = model.optimizer.inner_optimizer
    return {
        "weights": weights_of(model),
        "iterations": int(keras.ops.convert_to_numpy(inner.iterations)),
        "rate": float(keras.ops.convert_to_numpy(inner.learning_rate)),
        "scale": float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)),
        **{name: (callbacks[name].averaged_weights(),
                  callbacks[name].num_averaged) for name in ("ema1", "ema3")},
        "snapshot_steps": getattr(
            callbacks.get("snapshots"), "snapshot_steps", None
        ),
    }


@pytest.mark.usefixtures("mixed_float16")
def test_mixed_precision_with_steps_per_execution_equals_one_step(spe):
    one, many = mixed_precision_run(1), mixed_precision_run(spe)
    assert one["iterations"] == many["iterations"] == 18  # 6 steps skipped
    assert one["scale"] == many["scale"] < 2.0**15
    assert many["rate"] == pytest.approx(0.05 * 0.5 ** (18 // 5), rel=1e-6)
    assert one["rate"] == pytest.approx(many["rate"], rel=1e-6)
    assert_close(many["weights"], one["weights"])
    for name, terms in (("ema1", 18), ("ema3", 6)):
        assert many[name][1] == one[name][1] == terms
        assert_close(many[name][0], one[name][0])


@pytest.mark.usefixtures("mixed_float16")
def test_mixed_precision_snapshots_with_steps_per_execution(spe):
    one = mixed_precision_run(1, "snapshots")
    many = mixed_precision_run(spe, "snapshots")
    assert one["iterations"] == many["iterations"] == 18  # 6 steps skipped
    # earlier snapshots may move to the end of the execution holding their
    # cycle's end (the callback warns); the last is at the count reached
    assert one["snapshot_steps"][-1] == many["snapshot_steps"][-1] == 18
    assert many["rate"] == pytest.approx(one["rate"], rel=1e-6)
    assert_close(many["weights"], one["weights"])
