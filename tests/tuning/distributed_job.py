"""One process of a distributed search, for test_distributed_search.py.

    python tests/tuning/distributed_job.py DIRECTORY LOG_DIR OUT_JSON

Run with KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT
set; every process runs the very same `search_hyperparameters` call. Writes
the process's `SearchResult` (trials, best, log_dir, role, the fine space)
and, for a worker, the wall-clock start and end of each trial it trained.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

import keras  # noqa: E402

from keras_trainopt.demo import load_digits_split  # noqa: E402
from keras_trainopt.tuning import search_hyperparameters  # noqa: E402


class Clock(keras.callbacks.Callback):
    """Wall-clock start and end of each fit (each trial), in a list."""

    spans = []

    def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
        return self

    def on_train_begin(self, logs=None):
        Clock.spans.append([time.time(), None])

    def on_train_end(self, logs=None):
        Clock.spans[-1][1] = time.time()


def build_model(config):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(16, activation="relu",
                           kernel_regularizer=config.regularizer()),
        keras.layers.Dropout(config.dropout),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(config.optimizer(), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(directory, log_dir, out):
    (x, y), (x_val, y_val), _ = load_digits_split(0)
    result = search_hyperparameters(
        build_model, x[:300], y[:300], validation_data=(x_val, y_val),
        max_trials=6, epochs=2, seed=1, directory=directory, log_dir=log_dir,
        search_space={"learning_rate": (1e-3, 0.3)}, callbacks=[Clock()],
        verbose=0)
    fine = result.fine_space
    with open(out, "w") as f:
        json.dump({
            "role": result.role,
            "trials": result.trials,
            "best": None if result.best is None else dict(result.best),
            "best_score": result.best_score,
            "log_dir": result.log_dir,
            "fine_ranges": None if fine is None else fine.ranges,
            "fine_schedule": None if fine is None else fine.schedules,
            "spans": Clock.spans,
        }, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
