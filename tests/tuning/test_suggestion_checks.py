"""Doubts about a range test's suggestion (issue 19, item 5)."""

import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import find_learning_rate
from keras_trainopt.tuning.suggestion_checks import suggestion_doubts

RATES = np.logspace(-7, 1, 81)  # a decade is 10 points


def sigmoid_fall(center):
    """A loss of 1 that falls to 0 around the rate 10 ** center."""
    return 1 / (1 + np.exp(4 * (np.log10(RATES) - center)))


def test_a_suggestion_on_the_descent_has_no_doubt():
    assert suggestion_doubts(RATES, sigmoid_fall(-2), 1e-3) == []
    assert suggestion_doubts(RATES, sigmoid_fall(-2), 1e-2) == []


@pytest.mark.parametrize("suggestion", [5.3e-7, 1e-7, 1e-8])
def test_low_edge_is_a_decade_above_the_first_rate(suggestion):
    doubts = suggestion_doubts(RATES, sigmoid_fall(-2), suggestion,
                               rule="steepest")
    assert len(doubts) == 1
    assert "low edge" in doubts[0] and "rule='steepest'" in doubts[0]
    assert f"{suggestion:.3g}" in doubts[0] and "`lr_min`" in doubts[0]
    assert suggestion_doubts(RATES, sigmoid_fall(-2), 1.1e-6) == []


def test_high_edge_only_where_the_range_ends():
    still_falling = sigmoid_fall(0.5)  # still falling at lr_max = 10
    (doubt,) = suggestion_doubts(RATES, still_falling, 5.0)
    assert "high edge" in doubt and "`lr_max`" in doubt
    assert suggestion_doubts(RATES, still_falling, 0.5) == []
    # a sweep that stopped early (diverged) at 1e-1 of a range up to 10
    stopped = RATES[:61]
    assert suggestion_doubts(stopped, sigmoid_fall(-2)[:61], 5e-2,
                             lr_max=10.0) == []


def test_a_suggestion_after_which_the_loss_never_falls():
    # falls 50% early, then flat: a rate on the flat part is on no descent
    losses = np.where(RATES < 1e-5, 1.0, 0.5)
    (doubt,) = suggestion_doubts(RATES, losses, 1e-3, rule="minimum")
    assert "not on a descent" in doubt and "rule='minimum'" in doubt
    # a 9% fall after it is still none; 11% is one
    assert suggestion_doubts(RATES, np.where(RATES < 1e-2, 1.0, 0.91), 1e-3)
    assert not suggestion_doubts(RATES, np.where(RATES < 1e-2, 1.0, 0.89), 1e-3)


def test_non_finite_losses_are_skipped_and_bad_input_is_named():
    losses = sigmoid_fall(-2)
    losses[-3:] = np.nan  # the sweep diverged
    assert suggestion_doubts(RATES, losses, 1e-2) == []
    with pytest.raises(ValueError, match="suggestion"):
        suggestion_doubts(RATES, losses, 0.0)
    with pytest.raises(ValueError, match="same length"):
        suggestion_doubts(RATES[:5], losses, 1e-2)


def test_batchnorm_model_after_one_epoch_warns():
    # the case: a partly trained CNN with BatchNorm on digits
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    y = digits.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = find_learning_rate(model, x, y, batch_size=32, steps=60,
                                    rule="steepest")
    warned = [str(w.message) for w in caught
              if issubclass(w.category, UserWarning)]
    assert result.warnings and warned == result.warnings
    # each warning says what to do
    assert all("`lr_min`" in w or "`steps`" in w for w in warned)
