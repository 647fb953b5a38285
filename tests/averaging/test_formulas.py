import numpy as np
import pytest
from keras import ops

from keras_trainopt.averaging import formulas


@pytest.mark.parametrize("n, expected", [(0, 0.1), (10, 0.55), (100, 0.918)])
def test_warmup_matches_tensorflow_reference_values(n, expected):
    # REFERENCE.md: TF / TF Addons warm-up min(decay, (1+n)/(10+n))
    assert formulas.ema_decay(n, 0.999) == pytest.approx(expected, abs=5e-4)


def test_warmup_saturates_at_the_decay():
    assert formulas.ema_decay(10**7, 0.999) == pytest.approx(0.999)
    assert formulas.ema_decay(5, 0.9, warmup=False) == pytest.approx(0.9)


def test_every_k_compounds_the_per_step_decay():
    for n in (0, 3, 50, 5000):
        per_step = min(0.99, (1 + 4 * n) / (10 + 4 * n))
        assert formulas.ema_decay(n, 0.99, every=4) == pytest.approx(
            per_step**4
        )
    assert formulas.ema_decay(7, 0.99, warmup=False, every=4) == pytest.approx(
        0.99**4
    )


def test_keras_ops_gives_the_numpy_values():
    n = np.arange(0, 2000, 37, dtype="float32")
    expected = formulas.ema_decay(n.astype("float64"), 0.999, every=3)
    got = ops.convert_to_numpy(formulas.ema_decay(n, 0.999, every=3, xp=ops))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_equal_average_is_the_running_mean():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(9, 4))
    average = np.zeros(4)
    for n, value in enumerate(values):
        c = formulas.equal_average_coefficient(n)
        average = formulas.average_update(average, value, c)
    np.testing.assert_allclose(average, values.mean(axis=0), rtol=1e-12)


def test_keras_use_ema_reference_value():
    """REFERENCE.md: SGD(lr=0.01), w0 = 10, gradient 1, ten steps, d = 0.99
    with the first update a copy: EMA = 9.985618."""
    w, ema = 10.0, None
    for step in range(10):
        w -= 0.01
        ema = w if step == 0 else formulas.average_update(ema, w, 1 - 0.99)
    assert w == pytest.approx(9.9)
    assert ema == pytest.approx(9.985618, abs=1e-6)


def test_all_finite_is_false_for_any_nan_or_inf():
    ok = [np.ones((2, 3)), np.zeros(4)]
    assert formulas.all_finite(ok)
    for bad in (np.nan, np.inf, -np.inf):
        arrays = [a.copy() for a in ok]
        arrays[1][2] = bad
        assert not formulas.all_finite(arrays)
    assert bool(ops.convert_to_numpy(formulas.all_finite(
        [ops.convert_to_tensor(a) for a in ok], xp=ops)))
