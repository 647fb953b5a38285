import math

import pytest

from keras_trainopt import ExponentialDecay


def test_closed_form_and_half_life():
    decay = ExponentialDecay(0.1, decay=0.07)
    for t in range(50):
        assert decay.learning_rate(t) == pytest.approx(0.1 * math.exp(-0.07 * t))
    half_life = math.log(2) / 0.07
    assert decay.learning_rate(half_life) == pytest.approx(0.05)


def test_staircase_holds_blocks():
    decay = ExponentialDecay(0.1, decay=0.1, staircase=True, every=3)
    assert [decay.learning_rate(t) for t in range(7)] == pytest.approx(
        [0.1] * 3 + [0.1 * math.exp(-0.3)] * 3 + [0.1 * math.exp(-0.6)]
    )
