"""Tutorial 03 as a script: weight averages and ensembles on the digits.

    python examples/03_averaging_and_ensembles.py
    tensorboard --logdir runs/03_averaging

One small network (64-32-10 MLP, Nesterov SGD at a constant 0.05, batch 32)
trained on scikit-learn's bundled digits (no download), and six ways to get
predictions out of it: the final weights, their exponential moving average
(EMA), stochastic weight averaging (SWA), a checkpoint ensemble, a snapshot
ensemble and a seed ensemble. Prints the test accuracy of each.
`KERAS_TRAINOPT_SMOKE=1` runs a reduced version in seconds. The notebook
`03_averaging_and_ensembles.ipynb` tells the same story with the formulas
and plots.
"""

import os

import keras
import numpy as np

import keras_trainopt as kt
from keras_trainopt.demo import build_model
from keras_trainopt.demo import load_digits_split

SMOKE = os.environ.get("KERAS_TRAINOPT_SMOKE") == "1"
EPOCHS = 3 if SMOKE else 40
SEEDS = 2 if SMOKE else 5
CYCLES = 5
LEARNING_RATE = 0.05
LOG_DIR = "runs/03_averaging"

(x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(seed=0)
fit_args = {"epochs": EPOCHS, "batch_size": 32, "verbose": 0}


def compiled_model():
    model = build_model(hidden=32)
    model.compile(kt.nesterov_sgd(LEARNING_RATE, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def accuracy(model, callbacks=None):
    if callbacks:  # predict runs the callbacks: they swap the average in and out
        probabilities = model.predict(x_test, verbose=0, callbacks=callbacks)
    else:  # a plain call: predict would trace a new function for every model
        probabilities = keras.ops.convert_to_numpy(model(x_test))
    return float(np.mean(np.argmax(probabilities, axis=1) == y_test))


# 1. One ordinary run with three passive callbacks: none changes training.
keras.utils.set_random_seed(0)
model = compiled_model()
ema = kt.ExponentialMovingAverage(decay=0.99, apply_at_end=False)
swa = kt.StochasticWeightAveraging(start_epoch=EPOCHS - max(1, EPOCHS // 4),
                                   apply_at_end=False)
checkpoints = kt.CheckpointEnsemble(every=1, keep=5)
model.fit(x_train, y_train, validation_data=(x_val, y_val),
          callbacks=[ema, swa, checkpoints,
                     keras.callbacks.TensorBoard(f"{LOG_DIR}/averages")],
          **fit_args)
scores = {
    "final weights": accuracy(model),
    "EMA": accuracy(model, callbacks=[ema]),  # the average swapped in, then out
    "SWA": accuracy(model, callbacks=[swa]),
    "checkpoint ensemble": accuracy(checkpoints.ensemble()),
}

# 2. A snapshot ensemble: cyclic cosine annealing, one snapshot per cycle.
keras.utils.set_random_seed(0)
snapshot_model = compiled_model()
snapshots = kt.SnapshotEnsemble(cycles=CYCLES)
snapshot_model.fit(x_train, y_train, validation_data=(x_val, y_val),
                   callbacks=[snapshots,
                              keras.callbacks.TensorBoard(f"{LOG_DIR}/snapshot")],
                   **fit_args)
scores["snapshot, last alone"] = accuracy(snapshot_model)
scores["snapshot ensemble"] = accuracy(snapshots.ensemble())

# 3. A seed ensemble: the same recipe from SEEDS random initializations.
seed_ensemble, _ = kt.fit_seed_ensemble(compiled_model, x_train, y_train,
                                        seeds=SEEDS, **fit_args)
scores["seed ensemble"] = accuracy(seed_ensemble)

kt.log_results(LOG_DIR, {  # TensorBoard scalars results/test_accuracy/...
    "test_accuracy/" + name.replace(" ", "_").replace(",", ""): value
    for name, value in scores.items()})
members = {"checkpoint ensemble": len(checkpoints.snapshots),
           "snapshot ensemble": CYCLES, "seed ensemble": SEEDS}
print(f"Test accuracy on {len(y_test)} digits ({EPOCHS} epochs; one test "
      f"image is {100 / len(y_test):.2f} points):")
for name, value in scores.items():
    change = round((value - scores["final weights"]) * len(y_test))
    print(f"  {name:22s} {100 * value:6.2f}%  {change:+3d} images vs. final, "
          f"{members.get(name, 1)} model(s) at inference")
print(f"EMA: decay 0.99, {ema.num_averaged} averaging steps (every 8th update); "
      f"SWA: the last {swa.num_averaged} epoch ends; snapshots at steps "
      f"{snapshots.snapshot_steps} (cosine cycles of {snapshots.cycle_steps}).")
print(f"TensorBoard: tensorboard --logdir {LOG_DIR}")
