import pytest

from keras_trainopt import StepDecay


def test_halve_every_five_epochs():
    decay = StepDecay(0.1, factor=0.5, every=5)
    expected = [0.1 * 0.5 ** (t // 5) for t in range(30)]  # PyTorch StepLR
    assert [decay.learning_rate(t) for t in range(30)] == pytest.approx(
        expected, rel=1e-12
    )


def test_tenfold_every_twenty_with_floor_and_warmup():
    decay = StepDecay(1.0, factor=0.1, every=20, warmup=4,
                      min_learning_rate=1e-3)
    assert decay.learning_rate(0) == pytest.approx(0.2)
    assert decay.learning_rate(3) == pytest.approx(0.8)
    assert decay.learning_rate(4) == pytest.approx(1.0)
    assert decay.learning_rate(24) == pytest.approx(0.1)
    assert decay.learning_rate(84) == pytest.approx(1e-3)  # 1e-4, floored
