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


def _numpy_ema(trajectory, decay, every):
    """A per-step (every=1) or strided EMA without warm-up, in plain NumPy."""
    average = trajectory[0].copy()
    for step in range(every, len(trajectory), every):
        d = decay**every
        average = d * average + (1 - d) * trajectory[step]
    return average


@pytest.mark.parametrize("decay", [0.99, 0.996, 0.998, 0.999])
def test_default_stride_stays_within_its_bound_of_the_per_step_ema(decay):
    """|ema_k - ema_1| <= ~(k - 1) / 2 updates' worth of weight movement.

    On a drifting, noisy trajectory of 20 time constants, element by element,
    with the worst phase of the last strided sample.
    """
    every = formulas.default_every(decay)
    tau = round(1 / (1 - decay))
    rng = np.random.default_rng(0)
    steps = 20 * tau
    moves = 0.01 * rng.normal(size=(steps, 50)) + 0.002
    trajectory = np.concatenate([np.zeros((1, 50)), np.cumsum(moves, axis=0)])
    per_step = _numpy_ema(trajectory, decay, 1)
    largest_move = np.abs(moves).max()
    for phase in range(every):
        end = len(trajectory) - phase
        strided = _numpy_ema(trajectory[:end], decay, every)
        gap = np.abs(strided - per_step).max()
        # (k - 1) / 2 in the limit, 3.55 at decay 0.99 and k = 8 (docstring)
        assert gap <= (0.5 * (every - 1) + 0.1) * largest_move
    # and the stride's share of the EMA's own lag stays under 0.4%
    assert (every - 1) / (2 * (tau - 1)) < 0.004
