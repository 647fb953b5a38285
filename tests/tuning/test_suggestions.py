import numpy as np
import pytest

from keras_trainopt.tuning import suggestions

RATES = np.logspace(-5, 0, 51)


def sigmoid_drop(center):
    """A loss that falls fastest at log10(rate) = center, then blows up."""
    logs = np.log10(RATES)
    loss = 1 / (1 + np.exp(3 * (logs - center)))
    return loss + np.where(logs > center + 2, 10 ** (logs - center - 2), 0)


def test_steepest_finds_the_fastest_fall():
    assert suggestions.steepest(RATES, sigmoid_drop(-3)) == pytest.approx(1e-3)


def test_minimum_is_a_tenth_of_the_lowest_point():
    losses = sigmoid_drop(-3)
    assert suggestions.minimum(RATES, losses) == pytest.approx(
        RATES[np.argmin(losses)] / 10
    )


def test_valley_follows_fastai():
    # fastai's valley on a clean V: the longest decreasing run is the left
    # arm, indices 0..10 (length 11, start = 10 - 11 = -1 as fastai computes
    # it); sections = 11/3; index = -1 + 3 + 1 = 3
    losses = np.abs(np.arange(21) - 10.0)
    rates = np.logspace(-6, -1, 21)
    assert suggestions.valley(rates, losses) == pytest.approx(rates[3])


def test_non_finite_losses_are_ignored():
    losses = sigmoid_drop(-3).copy()
    losses[-5:] = np.inf
    assert suggestions.steepest(RATES, losses) == pytest.approx(1e-3)


@pytest.mark.parametrize("rule", sorted(suggestions.RULES))
def test_bad_curves_are_refused(rule):
    fn = suggestions.RULES[rule]
    with pytest.raises(ValueError, match="same length"):
        fn([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="Fewer than 2 finite losses"):
        fn([1e-3, 1e-2, 1e-1], [1.0, np.nan, np.inf])


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("rule", sorted(suggestions.RULES))
def test_inputs_are_checked_and_named(rule):
    fn = suggestions.RULES[rule]
    rates = np.logspace(-4, 0, 21)
    losses = 1 / (1 + np.exp(4 * (np.log10(rates) + 2)))
    # before: "could not convert string to float", naming nothing
    with pytest.raises(TypeError, match=r"`learning_rates` must be an array"):
        fn("abc", losses)
    # before: negative or unsorted rates gave a NaN or arbitrary suggestion
    for bad in (-rates, rates[::-1], np.zeros(21)):
        with pytest.raises(ValueError, match=r"`learning_rates` must be finite"):
            fn(bad, losses)
    # before: the message named `lr_min`, not an argument of the rules
    with pytest.raises(ValueError, match=r"`losses` must hold at least 2"):
        fn(rates, np.full(21, np.nan))
