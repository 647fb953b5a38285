"""A hyperparameter search on the digits, as measured in the README.

    python benchmarks/search_digits.py [--trials 16] [--epochs 10] [--seed 0]

Runs `search_hyperparameters` over the default space (learning rate, decay
schedule, L2, dropout; coarse then fine) for the demo's 64-64-10 MLP on the
demo's split, prints the wall time and the trials table, then trains the
best configuration for 30 epochs and prints its test accuracy.
"""

import argparse
import tempfile
import time

import keras

from keras_trainopt import search_hyperparameters
from keras_trainopt.demo import load_digits_split


def build_model(config):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu",
                           kernel_regularizer=config.regularizer()),
        keras.layers.Dropout(config.dropout),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(config.optimizer(), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    (x, y), validation, (x_test, y_test) = load_digits_split(0)
    started = time.perf_counter()
    result = search_hyperparameters(
        build_model, x, y, validation_data=validation,
        max_trials=args.trials, epochs=args.epochs, seed=args.seed,
        directory=tempfile.mkdtemp(prefix="search_digits_"), verbose=0,
    )
    print(f"search: {time.perf_counter() - started:.1f} s")
    print(result.table())
    print("edge warnings:", result.warnings or "none")
    keras.utils.set_random_seed(args.seed)
    model = build_model(result.best)
    model.fit(x, y, epochs=3 * args.epochs, batch_size=32, verbose=0,
              callbacks=result.best.stretched(3).callbacks())
    print(f"best, retrained {3 * args.epochs} epochs: test accuracy "
          f"{model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")


if __name__ == "__main__":
    main()
