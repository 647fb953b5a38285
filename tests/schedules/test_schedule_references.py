"""Each decay schedule against independent references.

References: the closed forms (cs231n), Keras' own `ExponentialDecay` and
`InverseTimeDecay` with mapped parameters, PyTorch `StepLR`'s closed form, and
the values in shared/REFERENCE.md.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainopt.schedules import ExponentialDecaySchedule
from keras_trainopt.schedules import InverseTimeDecaySchedule
from keras_trainopt.schedules import StepDecaySchedule

STEPS = list(range(0, 400, 7)) + [99, 100, 101, 149, 150, 151, 1000, 12345]


def tensor_value(schedule, step):
    return float(ops.convert_to_numpy(schedule(step)))


def steplr(base, gamma, step_size, epoch):
    """PyTorch StepLR's closed form: base * gamma ** (epoch // step_size)."""
    return base * gamma ** (epoch // step_size)


@pytest.mark.parametrize("factor, every", [(0.5, 5), (0.1, 20), (0.9, 1)])
def test_step_decay_matches_pytorch_steplr(factor, every):
    schedule = StepDecaySchedule(0.3, factor=factor, every=every)
    for t in STEPS:
        expected = steplr(0.3, factor, every, t)
        assert schedule.value(t) == pytest.approx(expected, rel=1e-12, abs=0)
        assert tensor_value(schedule, t) == pytest.approx(
            expected, rel=5e-5, abs=1e-30
        )


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("decay_steps, decay_rate", [(100, 0.96), (7, 0.5)])
def test_exponential_matches_keras(staircase, decay_steps, decay_rate):
    reference = keras.optimizers.schedules.ExponentialDecay(
        0.1, decay_steps, decay_rate, staircase=staircase
    )
    ours = ExponentialDecaySchedule(
        0.1,
        decay=-math.log(decay_rate) / decay_steps,
        staircase=staircase,
        every=decay_steps if staircase else 1,
    )
    for t in STEPS:
        expected = float(ops.convert_to_numpy(reference(t)))
        assert ours.value(t) == pytest.approx(expected, rel=1e-5)
        assert tensor_value(ours, t) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("decay_steps, decay_rate", [(100, 0.5), (3, 2.0)])
def test_inverse_time_matches_keras(staircase, decay_steps, decay_rate):
    reference = keras.optimizers.schedules.InverseTimeDecay(
        0.1, decay_steps, decay_rate, staircase=staircase
    )
    ours = InverseTimeDecaySchedule(
        0.1,
        decay=decay_rate / decay_steps,
        staircase=staircase,
        every=decay_steps if staircase else 1,
    )
    for t in STEPS:
        expected = float(ops.convert_to_numpy(reference(t)))
        assert ours.value(t) == pytest.approx(expected, rel=1e-5)
        assert tensor_value(ours, t) == pytest.approx(expected, rel=1e-5)


def test_reference_values():
    # shared/REFERENCE.md: ExponentialDecay(0.1, 100, 0.96) and
    # InverseTimeDecay(0.1, 100, 0.5) at t = 150.
    k_exp = -math.log(0.96) / 100
    assert ExponentialDecaySchedule(0.1, k_exp).value(150) == pytest.approx(
        0.0940604061, abs=1e-10
    )
    assert ExponentialDecaySchedule(
        0.1, k_exp, staircase=True, every=100
    ).value(150) == pytest.approx(0.096, abs=1e-12)
    assert InverseTimeDecaySchedule(0.1, 0.005).value(150) == pytest.approx(
        0.0571428571, abs=1e-10
    )
    assert InverseTimeDecaySchedule(
        0.1, 0.005, staircase=True, every=100
    ).value(150) == pytest.approx(0.0666666667, abs=1e-10)


@pytest.mark.parametrize(
    "schedule, closed_form",
    [
        (StepDecaySchedule(0.2, 0.5, 3, warmup=4, min_learning_rate=0.01),
         lambda s: 0.2 * 0.5 ** (s // 3)),
        (ExponentialDecaySchedule(0.2, 0.3, warmup=2, min_learning_rate=0.01),
         lambda s: 0.2 * math.exp(-0.3 * s)),
        (InverseTimeDecaySchedule(0.2, 0.3, warmup=5, min_learning_rate=0.01),
         lambda s: 0.2 / (1 + 0.3 * s)),
    ],
    ids=["step", "exponential", "inverse_time"],
)
def test_warmup_and_floor(schedule, closed_form):
    w = schedule.warmup
    for t in range(60):
        if t < w:
            expected = 0.2 * (t + 1) / (w + 1)
        else:
            expected = closed_form(t - w)
        expected = max(expected, 0.01)
        assert schedule.value(t) == pytest.approx(expected, rel=1e-12)
        assert tensor_value(schedule, t) == pytest.approx(expected, rel=1e-5)
    ramp = [schedule.value(t) for t in range(w + 1)]
    assert ramp == sorted(ramp) and ramp[-1] == pytest.approx(0.2)


def test_steps_per_epoch_counts_epochs():
    schedule = StepDecaySchedule(0.1, 0.5, 2, steps_per_epoch=10)
    for step in range(100):
        expected = 0.1 * 0.5 ** ((step // 10) // 2)
        assert tensor_value(schedule, step) == pytest.approx(expected, rel=1e-6)


def test_value_accepts_numpy_arrays_through_formulas():
    schedule = ExponentialDecaySchedule(0.1, 0.01)
    t = np.arange(5.0)
    np.testing.assert_allclose(
        [schedule.value(x) for x in t], 0.1 * np.exp(-0.01 * t), rtol=1e-12
    )
