"""Retraining the winner reproduces the search (issue 22, point 3).

`build_model(result.best)` with `result.best.callbacks()` and the same data,
epochs and batch size is the winning trial's training: seeded with the
trial's seed it is the very same run (its curve equals the one keras-tuner
recorded), and with other seeds it scores within the seed-to-seed spread.
On two problems: the digits and 4 overlapping Gaussian classes. (Spirals
were tried too: at 6 epochs each seed leaves the plateau at its own time,
and on the JAX backend the winner of 2 trials scored 0.91 against 0.82-0.85
for 4 other seeds, the luck of the draw that docs/search.md describes; the
exact-seed check passed there as well.)
"""

import keras
import numpy as np
import pytest

from keras_trainopt.demo import load_digits_split
from keras_trainopt.tuning import search_hyperparameters


def digits():
    (x, y), (x_val, y_val), _ = load_digits_split(0)
    return x[:600], y[:600], x_val[:300], y_val[:300], 64, 10


def blobs(points=300, classes=4, dims=8, seed=0):
    """4 overlapping Gaussian classes in 8-D (about 10% Bayes error)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.2, (classes, dims))
    y = np.repeat(np.arange(classes), points)
    x = (centres[y] + rng.normal(size=(len(y), dims))).astype("float32")
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    split = len(y) * 2 // 3
    return x[:split], y[:split], x[split:], y[split:], dims, classes


def builder(inputs, classes):
    def build_model(config):
        model = keras.Sequential([
            keras.Input((inputs,)),
            keras.layers.Dense(32, activation="relu",
                               kernel_regularizer=config.regularizer()),
            keras.layers.Dropout(config.dropout),
            keras.layers.Dense(classes, activation="softmax"),
        ])
        model.compile(config.optimizer(), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    return build_model


@pytest.mark.slow  # two searches and six retrains: about a minute
@pytest.mark.parametrize("problem", [digits, blobs])
def test_retraining_the_winner_reproduces_its_trial(problem, tmp_path):
    x, y, x_val, y_val, inputs, classes = problem()
    build_model = builder(inputs, classes)
    epochs = 6
    result = search_hyperparameters(
        build_model, x, y, validation_data=(x_val, y_val), max_trials=2,
        epochs=epochs, coarse_fraction=1.0, seed=5, verbose=0,
        search_space={"learning_rate": (0.02, 0.2)},
        directory=str(tmp_path))
    best = result.best_trial
    # keras-tuner's own record of the winner's score
    recorded = result.tuners["coarse"].oracle.get_trial(best["trial"]).score

    def retrain(seed, config=result.best, factor=1):
        keras.utils.set_random_seed(seed)
        model = build_model(config)
        history = model.fit(x, y, validation_data=(x_val, y_val),
                            epochs=epochs * factor, batch_size=32,
                            callbacks=config.callbacks(), verbose=0)
        return history.history["val_accuracy"]

    # the trial's own seed: the very same run
    assert max(retrain(best["seed"])) == pytest.approx(recorded, abs=1e-6)
    # other seeds: the trial's score is within their spread (widened by
    # 0.03, 9 validation points: 4 seeds see only part of the spread)
    scores = [max(retrain(seed)) for seed in (101, 202, 303, 404)]
    assert min(scores) - 0.03 <= recorded <= max(scores) + 0.03, (
        recorded, scores)
    # stretched 2x: the same annealing over twice the epochs ends no worse
    longer = retrain(505, result.best.stretched(2), factor=2)
    assert longer[-1] >= min(scores) - 0.03, (longer, scores)
