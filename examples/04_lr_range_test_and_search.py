"""Tutorial 04 as a script: the learning-rate range test, then a search.

    python examples/04_lr_range_test_and_search.py
    tensorboard --logdir runs/04_search     # HParams dashboard: search/hparams

On scikit-learn's bundled digits (no download): `find_learning_rate` sweeps
the rate and suggests one by three rules; a model trains with the suggestion;
`search_hyperparameters` then searches learning rate, decay schedule, L2 and
dropout at random, coarse then fine, and the best configuration trains for
longer. `KERAS_TRAINOPT_SMOKE=1` runs a reduced version in seconds. The
notebook `04_lr_range_test_and_search.ipynb` tells the same story with plots.
"""

import os
import warnings

import keras

import keras_trainopt as kt
from keras_trainopt.demo import load_digits_split

SMOKE = os.environ.get("KERAS_TRAINOPT_SMOKE") == "1"
RANGE_TEST_STEPS = 100 if SMOKE else 300
EPOCHS = 2 if SMOKE else 10          # per training run and per search trial
TRIALS = 2 if SMOKE else 20          # half coarse, half fine
FINAL_EPOCHS = 2 if SMOKE else 30    # the winner trains longer
LOG_DIR = "runs/04_search"

(x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(seed=0)


def build_model(config=None):
    """64-64-10 MLP; `config` (a HyperparameterConfig) sets L2, dropout, rate."""
    regularizer = config.regularizer() if config else None
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu",
                           kernel_regularizer=regularizer),
        keras.layers.Dropout(config.dropout if config else 0.0),
        keras.layers.Dense(10, activation="softmax"),
    ])
    optimizer = config.optimizer() if config else kt.nesterov_sgd(0.01)
    model.compile(optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


# 1. The range test: one step per rate, from 1e-6 to 10, on the optimizer
#    we train with; the model comes back exactly as it was.
keras.utils.set_random_seed(0)
model = build_model()
found = kt.find_learning_rate(model, x_train, y_train, batch_size=32,
                              lr_min=1e-6, lr_max=10.0,
                              steps=RANGE_TEST_STEPS, seed=0)
print("range test suggestions: " + ", ".join(
    f"{rule} {rate:.3g}" for rule, rate in found.suggestions.items())
    + f"; using {found.rule}: {found.suggestion:.3g}")

# 2. Train with the suggestion (and, for comparison, with a guessed 0.01).
for name, rate in [("suggested", found.suggestion), ("guess_0.01", 0.01)]:
    keras.utils.set_random_seed(0)
    model = build_model()
    model.optimizer.learning_rate = rate
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                        epochs=EPOCHS, batch_size=32, verbose=0,
                        callbacks=[keras.callbacks.TensorBoard(
                            f"{LOG_DIR}/range_test/{name}")])
    print(f"lr {rate:.3g} ({name}): val accuracy after {EPOCHS} epochs "
          f"{history.history['val_accuracy'][-1]:.4f}")

# 3. Random search, coarse then fine, with HParams records for TensorBoard.
with warnings.catch_warnings():
    # the edge warnings are in result.warnings, printed below
    warnings.filterwarnings("ignore", message="best .* edge of its range")
    result = kt.search_hyperparameters(
        build_model, x_train, y_train, validation_data=(x_val, y_val),
        max_trials=TRIALS, epochs=EPOCHS, log_dir=f"{LOG_DIR}/hparams",
        seed=0, verbose=0)
print(result.table())
for sentence in result.warnings or ["no best value at the edge of its range"]:
    print("edge check:", sentence)

# 4. The winner, trained for longer with its own decay schedule.
keras.utils.set_random_seed(0)
model = build_model(result.best)
model.fit(x_train, y_train, validation_data=(x_val, y_val),
          epochs=FINAL_EPOCHS, batch_size=32, verbose=0,
          callbacks=[*result.best.callbacks(),
                     keras.callbacks.TensorBoard(f"{LOG_DIR}/best")])
_, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"best config {result.best!r}, trained {FINAL_EPOCHS} epochs: "
      f"test accuracy {test_accuracy:.4f}")
print(f"TensorBoard: tensorboard --logdir {LOG_DIR}")
