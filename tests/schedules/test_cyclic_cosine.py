import math

import keras
import pytest

from keras_trainopt.schedules import CyclicCosineSchedule


def huang(i, lr0, total, cycles):
    """Huang et al. 2017, eq. 2, with the 1-based iteration i (REFERENCE.md)."""
    length = math.ceil(total / cycles)
    return lr0 / 2 * (math.cos(math.pi * ((i - 1) % length) / length) + 1)


def test_matches_the_paper_formula_at_every_step():
    total, cycles = 100, 3
    schedule = CyclicCosineSchedule(0.2, math.ceil(total / cycles))
    for t in range(total):
        expected = huang(t + 1, 0.2, total, cycles)
        assert schedule.value(t) == pytest.approx(expected, rel=1e-12)
        tensor = float(keras.ops.convert_to_numpy(schedule(t)))
        assert tensor == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_serializes_and_works_inside_an_optimizer():
    schedule = CyclicCosineSchedule(0.1, 7, name="snap")
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert again.get_config() == schedule.get_config()
    keras.optimizers.SGD(learning_rate=schedule)


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"initial_learning_rate": 0, "cycle_steps": 5},
         "Received: initial_learning_rate=0"),
        ({"initial_learning_rate": 0.1, "cycle_steps": 0},
         "Received: cycle_steps=0"),
    ],
)
def test_bad_arguments(kwargs, text):
    with pytest.raises(ValueError, match=text):
        CyclicCosineSchedule(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_rates_beyond_float32_are_refused():
    # before: accepted, and the schedule returned inf inside the step
    with pytest.raises(ValueError, match=r"`initial_learning_rate` must be at most"):
        CyclicCosineSchedule(1e39, cycle_steps=4)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match=r"`name` must be a string or None"):
        CyclicCosineSchedule(0.1, cycle_steps=4, name=5)
