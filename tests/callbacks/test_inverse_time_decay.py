import pytest

from keras_trainopt import InverseTimeDecay


def test_closed_form():
    decay = InverseTimeDecay(0.1, decay=0.1)
    for t in range(50):
        assert decay.learning_rate(t) == pytest.approx(0.1 / (1 + 0.1 * t))
    assert decay.learning_rate(10) == pytest.approx(0.05)
    assert decay.learning_rate(20) == pytest.approx(0.1 / 3)


def test_staircase_holds_blocks():
    decay = InverseTimeDecay(0.1, decay=0.5, staircase=True, every=2)
    assert [decay.learning_rate(t) for t in range(5)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.1 / 3]
    )
