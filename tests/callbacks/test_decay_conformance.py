"""Behaviour shared by StepDecay, ExponentialDecay and InverseTimeDecay.

Expected rates come from closed forms written here in plain Python, never
from the code under test.
"""

import math

import keras
import numpy as np
import pytest

from keras_trainopt import ExponentialDecay
from keras_trainopt import InverseTimeDecay
from keras_trainopt import StepDecay
from keras_trainopt import nesterov_sgd
from tests.callbacks.helpers import Interrupt
from tests.callbacks.helpers import RateRecorder
from tests.callbacks.helpers import needs_steps_per_execution
from tests.callbacks.helpers import slow_unless
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model

LR0 = 0.2

# (constructor, closed form of lr(t) for lr0 = LR0)
CASES = {
    "step": (
        lambda **kw: StepDecay(factor=0.5, every=2, **kw),
        lambda t: LR0 * 0.5 ** (t // 2),
    ),
    "exponential": (
        lambda **kw: ExponentialDecay(decay=0.3, **kw),
        lambda t: LR0 * math.exp(-0.3 * t),
    ),
    "inverse_time": (
        lambda **kw: InverseTimeDecay(decay=0.7, **kw),
        lambda t: LR0 / (1 + 0.7 * t),
    ),
}
IDS = list(CASES)


def fit(model, callbacks, epochs, initial_epoch=0, batch_size=8, **kwargs):
    x, y = tiny_data()
    return model.fit(
        x, y, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch,
        callbacks=callbacks, verbose=0, **kwargs,
    )


@pytest.mark.parametrize("case", IDS)
def test_epoch_unit_sets_rate_for_each_epoch(case):
    make, closed = CASES[case]
    recorder = RateRecorder()
    history = fit(tiny_model(keras.optimizers.SGD(LR0)), [make(), recorder], 5)
    for epoch, _, rate in recorder.rows:
        assert rate == pytest.approx(closed(epoch), rel=1e-6)
    assert history.history["learning_rate"] == pytest.approx(
        [closed(e) for e in range(5)], rel=1e-6
    )


@pytest.mark.parametrize("case", IDS)
def test_step_unit_follows_optimizer_iterations(case):
    make, closed = CASES[case]
    recorder = RateRecorder()
    fit(tiny_model(keras.optimizers.SGD(LR0)), [make(unit="step"), recorder], 3)
    assert [row[1] for row in recorder.rows] == list(range(12))
    for _, step, rate in recorder.rows:
        assert rate == pytest.approx(closed(step), rel=1e-6)


@needs_steps_per_execution
@pytest.mark.parametrize("case", IDS)
def test_step_unit_with_steps_per_execution(case):
    make, closed = CASES[case]
    recorder = RateRecorder()
    model = tiny_model()
    model.compile(keras.optimizers.SGD(LR0), loss="mse", steps_per_execution=3)
    fit(model, [make(unit="step"), recorder], 2)
    # The batch hooks fire once per execution: every 3 updates; t is still
    # the number of updates applied, read from the optimizer.
    assert [row[1] for row in recorder.rows] == [0, 3, 4, 7]
    for _, step, rate in recorder.rows:
        assert rate == pytest.approx(closed(step), rel=1e-6)


@pytest.mark.parametrize("case", IDS)
def test_initial_epoch_continues_at_t(case):
    make, closed = CASES[case]
    recorder = RateRecorder()
    fit(tiny_model(keras.optimizers.SGD(LR0)), [make(), recorder], 6,
        initial_epoch=3)
    assert sorted({row[0] for row in recorder.rows}) == [3, 4, 5]
    for epoch, _, rate in recorder.rows:
        assert rate == pytest.approx(closed(epoch), rel=1e-6)


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_same_instance_in_two_fit_calls(case, unit):
    make, closed = CASES[case]
    callback = make(unit=unit)  # initial rate taken from the optimizer
    model = tiny_model(keras.optimizers.SGD(LR0))
    recorder = RateRecorder()
    fit(model, [callback, recorder], 3)
    fit(model, [callback, recorder], 6, initial_epoch=3)
    assert callback.get_state() == {"initial_learning_rate": pytest.approx(LR0)}
    for epoch, step, rate in recorder.rows:
        t = epoch if unit == "epoch" else step
        assert rate == pytest.approx(closed(t), rel=1e-6)


@pytest.mark.parametrize("case, unit, backup_first", slow_unless(
    # each decay, each unit and each callback order at least once
    {("step", "epoch", True), ("exponential", "step", True),
     ("inverse_time", "epoch", False), ("step", "step", False)},
    [(c, u, b) for b in (True, False) for u in ("epoch", "step") for c in IDS],
    ids=lambda cell: "-".join(map(str, cell[::-1])),
))
def test_resume_with_backup_and_restore(case, unit, backup_first, tmp_path):
    make, closed = CASES[case]
    epochs = 6

    def run(interrupt_at=None):
        model = tiny_model(keras.optimizers.SGD(LR0))
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        ours = make(unit=unit)
        callbacks = [backup, ours] if backup_first else [ours, backup]
        if interrupt_at is not None:
            callbacks.append(Interrupt(interrupt_at))
        # shuffle=False: on JAX and torch the batch order of a resumed epoch
        # comes from a fresh RNG, so a shuffled rerun sees other batches
        fit(model, callbacks, epochs, shuffle=False)
        return model

    reference = tiny_model(keras.optimizers.SGD(LR0))
    fit(reference, [make(unit=unit)], epochs, shuffle=False)

    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(interrupt_at=4)
    resumed = run()  # fresh model and callback, as after a restart

    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert float(resumed.optimizer.learning_rate) == pytest.approx(
        float(reference.optimizer.learning_rate), rel=1e-6
    )


@pytest.mark.parametrize("case", IDS)
def test_to_schedule_matches_learning_rate_at_every_step(case):
    make, _ = CASES[case]
    for unit, steps_per_epoch in (("step", None), ("epoch", 7)):
        callback = make(initial_learning_rate=LR0, unit=unit, warmup=3,
                        min_learning_rate=0.01)
        schedule = callback.to_schedule(steps_per_epoch=steps_per_epoch)
        assert isinstance(
            schedule, keras.optimizers.schedules.LearningRateSchedule
        )
        for step in range(200):
            t = step if steps_per_epoch is None else step // steps_per_epoch
            value = float(keras.ops.convert_to_numpy(schedule(step)))
            assert value == pytest.approx(callback.learning_rate(t), rel=1e-5)


@pytest.mark.parametrize("case", IDS)
def test_to_schedule_trains_like_the_callback(case):
    make, _ = CASES[case]
    callback = make(initial_learning_rate=LR0)
    with_callback = tiny_model(nesterov_sgd(LR0))
    fit(with_callback, [callback], 4)
    in_optimizer = tiny_model(nesterov_sgd(callback.to_schedule(4)))
    fit(in_optimizer, [], 4)
    for a, b in zip(with_callback.get_weights(), in_optimizer.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", IDS)
def test_schedule_optimizer_gets_a_helpful_error(case):
    make, _ = CASES[case]
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model = tiny_model(keras.optimizers.SGD(schedule))
    with pytest.raises(TypeError, match=r"to_schedule\(steps_per_epoch"):
        fit(model, [make()], 1)


@pytest.mark.parametrize("case", IDS)
def test_loss_scale_optimizer_is_unwrapped(case):
    make, closed = CASES[case]
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(LR0))
    history = fit(tiny_model(optimizer), [make()], 3)
    assert history.history["learning_rate"] == pytest.approx(
        [closed(e) for e in range(3)], rel=1e-6
    )


@pytest.mark.parametrize("case", IDS)
def test_unbound_callback_explains(case):
    make, _ = CASES[case]
    callback = make()
    with pytest.raises(ValueError, match="initial_learning_rate=None"):
        callback.learning_rate(3)
    with pytest.raises(ValueError, match="initial_learning_rate=None"):
        callback.to_schedule(10)


@pytest.mark.parametrize("case", IDS)
def test_to_schedule_argument_errors(case):
    make, _ = CASES[case]
    with pytest.raises(ValueError, match="needs `steps_per_epoch`"):
        make(initial_learning_rate=0.1).to_schedule()
    with pytest.raises(ValueError, match="only applies to unit='epoch'"):
        make(initial_learning_rate=0.1, unit="step").to_schedule(5)
    with pytest.raises(ValueError, match=r"`steps_per_epoch` must be >= 1"):
        make(initial_learning_rate=0.1).to_schedule(0)


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(unit="epochs"), ValueError,
         r"`unit` must be one of 'epoch', 'step'\. Received: unit='epochs'"),
        (dict(initial_learning_rate=-0.1), ValueError, "initial_learning_rate"),
        (dict(initial_learning_rate=float("inf")), ValueError,
         "initial_learning_rate"),
        (dict(initial_learning_rate=True), TypeError, "initial_learning_rate"),
        (dict(min_learning_rate=-1.0), ValueError, "min_learning_rate"),
        (dict(initial_learning_rate=0.1, min_learning_rate=0.2), ValueError,
         "min_learning_rate"),
        (dict(warmup=-2), ValueError, r"`warmup` must be >= 0"),
        (dict(warmup=2.0), TypeError, "warmup"),
        (dict(verbose="yes"), TypeError, "verbose"),
    ],
)
def test_bad_arguments_fail_at_construction(case, kwargs, error, pattern):
    make, _ = CASES[case]
    with pytest.raises(error, match=pattern):
        make(**kwargs)


@pytest.mark.parametrize("case", IDS)
def test_min_rate_above_optimizer_rate_fails_before_first_step(case):
    make, _ = CASES[case]
    model = tiny_model(keras.optimizers.SGD(0.01))
    with pytest.raises(ValueError, match="min_learning_rate"):
        fit(model, [make(min_learning_rate=0.05)], 1)
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize("case", IDS)
def test_config_round_trip(case):
    make, _ = CASES[case]
    callback = make(initial_learning_rate=0.3, unit="step", warmup=2,
                    min_learning_rate=1e-4, verbose=1)
    rebuilt = type(callback)(**callback.get_config())
    assert rebuilt.get_config() == callback.get_config()
    for t in (0, 1, 5, 50):
        assert rebuilt.learning_rate(t) == callback.learning_rate(t)


@pytest.mark.parametrize("case", IDS)
def test_state_round_trip(case):
    make, closed = CASES[case]
    trained = make()
    fit(tiny_model(keras.optimizers.SGD(LR0)), [trained], 1)
    fresh = make()
    fresh.set_state(trained.get_state())
    assert fresh.learning_rate(4) == pytest.approx(closed(4), rel=1e-12)


def test_verbose_messages(capsys):
    fit(tiny_model(keras.optimizers.SGD(LR0)),
        [StepDecay(factor=0.5, every=1, verbose=1)], 2)
    out = capsys.readouterr().out
    assert "\nEpoch 1: StepDecay setting learning rate to 0.2." in out
    assert "\nEpoch 2: StepDecay setting learning rate to 0.1." in out


@needs_steps_per_execution
# StepDecay and ExponentialDecay run with steps_per_execution > 1 in
# test_steps_per_execution.py too
@pytest.mark.parametrize("case", slow_unless({"inverse_time"}, IDS))
def test_step_unit_is_exact_inside_each_execution(case):
    # With steps_per_execution=4 the batch hooks fire once per 4 updates, yet
    # every update must use lr(t): the run equals one with the schedule
    # compiled into the optimizer.
    make, _ = CASES[case]
    callback = make(initial_learning_rate=LR0, unit="step")
    with_callback = tiny_model()
    with_callback.compile(nesterov_sgd(LR0), loss="mse", steps_per_execution=4)
    fit(with_callback, [callback], 3)
    reference = tiny_model(nesterov_sgd(callback.to_schedule()))
    fit(reference, [], 3)
    for a, b in zip(with_callback.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_step_unit_leaves_nothing_behind():
    model = tiny_model(keras.optimizers.SGD(LR0))
    fit(model, [StepDecay(factor=0.5, every=1, unit="step")], 1)
    assert "apply" not in vars(model.optimizer)
    rate = float(model.optimizer.learning_rate)
    fit(model, [], 2)  # a plain fit afterwards keeps the rate as it is
    assert float(model.optimizer.learning_rate) == rate


def test_step_hooks_reuse_the_traced_function_across_fits():
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.train_function)

    model = tiny_model(keras.optimizers.SGD(LR0))
    decay = ExponentialDecay(decay=0.1, unit="step")
    fit(model, [decay, Spy()], 1)
    fit(model, [decay, Spy()], 2, initial_epoch=1)
    assert seen[0] is seen[-1]  # no retrace for the second fit
    model.compile(keras.optimizers.SGD(LR0), loss="mse")
    fit(model, [decay, Spy()], 1)
    assert seen[-1] is not seen[0]  # a recompile gets a fresh function


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="a run_eagerly fit of a step hook fails in Keras' JAX metrics; "
    "traced steps run the Python once",
)
def test_step_unit_evaluates_the_schedule_once_per_update(monkeypatch):
    # Eagerly, every update runs the hook's Python: counting the schedule's
    # evaluations (in Keras ops, or in NumPy where the host counts) gives
    # one per update plus one at each epoch begin, for the first update.
    from keras_trainopt.schedules import StepDecaySchedule

    calls = []
    for name in ("__call__", "value"):
        original = getattr(StepDecaySchedule, name)

        def counted(self, t, _original=original):
            calls.append(t)
            return _original(self, t)

        monkeypatch.setattr(StepDecaySchedule, name, counted)
    model = tiny_model()
    model.compile(keras.optimizers.SGD(LR0), loss="mse", run_eagerly=True)
    recorder = RateRecorder()
    fit(model, [StepDecay(factor=0.5, every=2, unit="step"), recorder], 2)
    assert len(calls) == 8 + 2  # 2 epochs of 4 updates
    for _, step, rate in recorder.rows:
        assert rate == pytest.approx(LR0 * 0.5 ** (step // 2), rel=1e-6)
