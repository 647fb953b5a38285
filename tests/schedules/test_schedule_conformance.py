"""The same checks over every public schedule: errors, serialization, fit.

Each row of the table carries its own reference: the schedule's closed form
in plain Python (cs231n's decay formulas, Huang et al.'s cyclic cosine), as
a function of the optimizer step.
"""

import json
import math
from typing import Callable
from typing import NamedTuple

import keras
import numpy as np
import pytest
from keras import ops

import keras_trainopt
from keras_trainopt.schedules import CyclicCosineSchedule
from keras_trainopt.schedules import ExponentialDecaySchedule
from keras_trainopt.schedules import InverseTimeDecaySchedule
from keras_trainopt.schedules import StepDecaySchedule


class Row(NamedTuple):
    id: str
    schedule: keras.optimizers.schedules.LearningRateSchedule
    reference: Callable  # the rate at optimizer step `step`, in plain Python


def _step_reference(step):
    # StepDecaySchedule(0.1, 0.5, every=3, warmup=2, min_learning_rate=1e-3)
    if step < 2:
        return 0.1 * (step + 1) / (2 + 1)
    return max(0.1 * 0.5 ** ((step - 2) // 3), 1e-3)


TABLE = [
    Row("step",
        StepDecaySchedule(0.1, factor=0.5, every=3, warmup=2,
                          min_learning_rate=1e-3),
        _step_reference),
    Row("exponential",
        ExponentialDecaySchedule(0.1, decay=0.2, staircase=True, every=2),
        lambda step: 0.1 * math.exp(-0.2 * 2 * (step // 2))),
    Row("inverse_time",
        InverseTimeDecaySchedule(0.1, decay=0.5, steps_per_epoch=4, name="inv"),
        lambda step: 0.1 / (1 + 0.5 * (step // 4))),
    Row("cyclic_cosine",
        CyclicCosineSchedule(0.1, cycle_steps=5, name="cos"),
        lambda step: 0.1 / 2 * (math.cos(math.pi * (step % 5) / 5) + 1)),
]
SCHEDULES = [row.schedule for row in TABLE]
IDS = [row.id for row in TABLE]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_serialization_round_trip(schedule):
    config = keras.optimizers.schedules.serialize(schedule)
    config = json.loads(json.dumps(config))  # must be plain JSON
    restored = keras.optimizers.schedules.deserialize(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in range(0, 50, 3):
        assert float(ops.convert_to_numpy(restored(step))) == float(
            ops.convert_to_numpy(schedule(step))
        )


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_saved_model_restores_schedule(schedule, tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras_trainopt.nesterov_sgd(schedule), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.optimizer._learning_rate
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_learning_rate_inside_fit_follows_schedule(schedule):
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            step = int(self.model.optimizer.iterations)
            seen.append((step, float(self.model.optimizer.learning_rate)))

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), loss="mse")
    model.fit(np.ones((32, 3)), np.ones((32, 1)), batch_size=4, epochs=3,
              callbacks=[Record()], verbose=0)
    assert len(seen) == 24
    reference = TABLE[SCHEDULES.index(schedule)].reference
    for step, rate in seen:
        assert rate == pytest.approx(reference(step), rel=1e-6)


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_value_and_tensor_match_the_reference(row):
    for step in range(40):
        expected = row.reference(step)
        t = step if getattr(row.schedule, "steps_per_epoch", None) is None else (
            step // row.schedule.steps_per_epoch
        )
        assert row.schedule.value(t) == pytest.approx(expected, rel=1e-12)
        assert float(ops.convert_to_numpy(row.schedule(step))) == pytest.approx(
            expected, rel=1e-5, abs=1e-7
        )


COMMON_BAD = [
    (dict(initial_learning_rate=0.0), ValueError, "initial_learning_rate"),
    (dict(initial_learning_rate=-1.0), ValueError, "initial_learning_rate"),
    (dict(initial_learning_rate=float("nan")), ValueError,
     "initial_learning_rate"),
    (dict(initial_learning_rate="0.1"), TypeError, "initial_learning_rate"),
    (dict(initial_learning_rate=True), TypeError, "initial_learning_rate"),
    (dict(name=3), TypeError, "name"),
]
# the arguments of the decay schedules (not CyclicCosineSchedule's)
DECAY_BAD = [
    (dict(min_learning_rate=-0.1), ValueError, "min_learning_rate"),
    (dict(min_learning_rate=0.5), ValueError, "min_learning_rate"),
    (dict(warmup=-1), ValueError, "warmup"),
    (dict(warmup=1.5), TypeError, "warmup"),
    (dict(steps_per_epoch=0), ValueError, "steps_per_epoch"),
]
SPECIFIC_BAD = {
    StepDecaySchedule: DECAY_BAD + [
        (dict(factor=1.5), ValueError, r"`factor` must be in \(0, 1\)\. "
         r"Received: factor=1\.5"),
        (dict(factor=0.0), ValueError, "factor"),
        (dict(factor=1.0), ValueError, "factor"),
        (dict(factor=float("inf")), ValueError, "factor"),
        (dict(every=0), ValueError, r"`every` must be >= 1\. Received: every=0"),
        (dict(every=True), TypeError, "every"),
    ],
    ExponentialDecaySchedule: DECAY_BAD + [
        (dict(decay=-0.1), ValueError, r"`decay` must be >= 0\. "
         r"Received: decay=-0\.1"),
        (dict(decay=float("nan")), ValueError, "decay"),
        (dict(staircase=1), TypeError, "staircase"),
        (dict(every=5), ValueError, "every"),
        (dict(staircase=True, every=0), ValueError, "every"),
    ],
}
SPECIFIC_BAD[InverseTimeDecaySchedule] = SPECIFIC_BAD[ExponentialDecaySchedule]
SPECIFIC_BAD[CyclicCosineSchedule] = [
    (dict(cycle_steps=0), ValueError,
     r"`cycle_steps` must be >= 1\. Received: cycle_steps=0"),
    (dict(cycle_steps=2.5), TypeError, "cycle_steps"),
    (dict(cycle_steps=True), TypeError, "cycle_steps"),
]
REQUIRED = {CyclicCosineSchedule: {"cycle_steps": 4}}


@pytest.mark.parametrize(
    "cls", [type(schedule) for schedule in SCHEDULES], ids=IDS
)
def test_bad_arguments_name_the_argument(cls):
    for kwargs, error, pattern in COMMON_BAD + SPECIFIC_BAD[cls]:
        kwargs = {"initial_learning_rate": 0.1, **REQUIRED.get(cls, {}),
                  **kwargs}
        with pytest.raises(error, match=pattern):
            cls(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_rates_beyond_float32_are_refused():
    # before: accepted, and every rate inside the step was inf (or NaN)
    with pytest.raises(ValueError, match=r"`initial_learning_rate` must be at most"):
        StepDecaySchedule(1e39)


def test_warmup_of_a_huge_rate_does_not_overflow():
    # before: lr0 * (t + 1) overflowed float32 before the division by w + 1
    schedule = StepDecaySchedule(3e38, warmup=3)
    rates = np.asarray(ops.convert_to_numpy(schedule(np.arange(5))), "float64")
    assert np.all(np.isfinite(rates)) and np.all(rates <= 3e38 * (1 + 1e-6))


def test_decay_beyond_float32_is_refused():
    # before: accepted; inside the step decay * 0 was inf * 0, a NaN rate
    with pytest.raises(ValueError, match=r"`decay` must be at most"):
        ExponentialDecaySchedule(0.1, decay=3.5e38)


@pytest.mark.parametrize("argument", ["warmup", "every", "steps_per_epoch"])
def test_counts_beyond_int32_work_in_the_step(argument):
    # before (JAX): OverflowError mixing the Python int 2**31 with a tensor
    kwargs = {argument: 2**31} | ({"staircase": True} if argument == "every"
                                  else {})
    schedule = ExponentialDecaySchedule(0.1, 0.5, **kwargs)
    rates = np.asarray(ops.convert_to_numpy(schedule(np.arange(3))), "float64")
    assert np.all(np.isfinite(rates))
