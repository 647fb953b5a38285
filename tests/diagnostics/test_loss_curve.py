import numpy as np
import pytest

from keras_trainopt.diagnostics import RunningSmooth
from keras_trainopt.diagnostics import diagnose_loss_curve
from keras_trainopt.diagnostics import smooth
from keras_trainopt.diagnostics.loss_curve import is_diverging
from keras_trainopt.diagnostics.loss_curve import loss_curve_pattern

t = np.arange(200)


def test_smooth_matches_the_lr_finder_formula():
    losses = [3.0, 1.0, 2.0]
    avg, expected = 0.0, []
    for i, loss in enumerate(losses):
        avg = 0.98 * avg + 0.02 * loss
        expected.append(avg / (1 - 0.98 ** (i + 1)))
    np.testing.assert_allclose(smooth(losses), expected)
    assert smooth([5.0])[0] == pytest.approx(5.0)  # bias-corrected


@pytest.mark.parametrize(
    "losses, verdict",
    [
        (2.0 * np.exp(-t / 20) + 0.1, "good"),
        (2.0 - 0.004 * t, "learning_rate_too_low"),
        (np.full(200, 2.0), "learning_rate_too_low"),
        (1.0 + 0.9 * (t % 2), "learning_rate_too_high"),
        (np.ones(5), "insufficient_data"),
    ],
    ids=["exponential", "linear", "flat", "oscillating", "short"],
)
def test_shapes(losses, verdict):
    assert diagnose_loss_curve(losses).verdict == verdict


def _fall_then(level_after, low=0.5, start=2.0, n=100):
    """Falls exponentially from `start` to `low` in the first half, then
    moves linearly to `level_after` over the second."""
    half = n // 2
    fall = low + (start - low) * np.exp(-np.arange(half) / 5.0)
    return np.concatenate([fall, np.linspace(low, level_after, n - half)])


def _rebound_by_hand(losses):
    """The rebound rule written out on the raw series, for comparison."""
    n = len(losses)
    w = max(3, n // 10)
    first, recent = np.mean(losses[:3]), np.mean(losses[-w:])
    means = [np.mean(losses[i:i + w]) for i in range(n - w + 1)]
    start = int(np.argmin(means))
    low = means[start]
    return bool(start + w <= n - w and first > low and recent >= 1.5 * low
                and recent - low >= 0.25 * (first - low))


@pytest.mark.parametrize(
    "start, level_after, rebound",
    [(2.0, 1.2, True),  # recent 2.3x the low, half of the fall given back
     (2.0, 0.74, False),  # recent 1.44x the low: under 1.5x
     (4.0, 0.9, False),  # 1.7x the low, but 12% of a fall of 3.0 back
     (1.0, 0.8, True),  # 1.5x the low and 60% of a small fall back
     (2.0, 0.5, False)],  # stays at the low
)
def test_a_loss_that_falls_and_rises_back_has_rebounded(start, level_after,
                                                        rebound):
    losses = _fall_then(level_after, start=start)
    assert _rebound_by_hand(losses) is rebound
    assert (loss_curve_pattern(losses).verdict == "rebound") is rebound
    if rebound:
        assert diagnose_loss_curve(losses).verdict == "learning_rate_too_high"


@pytest.mark.parametrize("seed", range(20))
def test_noisy_healthy_curves_do_not_rebound(seed):
    # an exponential fall to a small loss with 30% multiplicative noise per
    # reading: the relative noise of a low loss is large, its fall larger
    noise = np.random.default_rng(seed).lognormal(0.0, 0.3, size=t.size)
    losses = (2.0 * np.exp(-t / 20) + 0.02) * noise
    assert not _rebound_by_hand(losses)
    assert loss_curve_pattern(losses).verdict != "rebound"


def test_divergence_rule():
    assert is_diverging(4.1, 1.0, 4.0)
    assert not is_diverging(3.9, 1.0, 4.0)
    assert is_diverging(float("nan"), 1.0, 4.0)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_running_smooth_checks_its_arguments():
    # before: accepted; update() then raised "unsupported operand" or
    # returned nonsense (beta > 1)
    with pytest.raises(TypeError, match=r"`beta` must be a number"):
        RunningSmooth(beta=None)
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\)"):
        RunningSmooth(beta=1.5)
    with pytest.raises(ValueError, match=r"`count` must be >= 0"):
        RunningSmooth(count=-1)


@pytest.mark.parametrize("losses", [None, "abc", [[1.0, 2.0]], ["a"]])
def test_loss_series_must_be_numbers(losses):
    # before: "'NoneType' object is not iterable", "could not convert string
    # to float", naming nothing
    with pytest.raises((TypeError, ValueError), match=r"`losses` must be"):
        smooth(losses)
    with pytest.raises((TypeError, ValueError), match=r"`losses` must be"):
        diagnose_loss_curve(losses)


def test_min_steps_zero_is_refused():
    # before: an empty series with min_steps=0 raised IndexError
    with pytest.raises(ValueError, match=r"`min_steps` must be >= 1"):
        diagnose_loss_curve([], min_steps=0)
