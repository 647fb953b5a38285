"""The monitors and the TrainingDoctor catching three deliberate problems.

The script version of `02_monitors_and_doctor.ipynb`:

    python examples/02_monitors_and_doctor.py
    tensorboard --logdir runs/02_monitors_and_doctor

A small network on scikit-learn's bundled digits (no download) is broken on
purpose, one problem at a time, under a `TrainingDoctor` (`LossMonitor`,
`OverfittingMonitor`, `UpdateRatioLogger`, `ActivationMonitor`):

1. a learning rate far too high: the loss diverges, the run stops, and the
   doctor says "learning rate too high ... try about 0.1";
2. a big network on ten images: "strong overfitting ... stop at epoch ...";
3. a tanh layer with huge initial weights: "layer hidden1 is ...% saturated";
4. a healthy run for contrast: update ratios near 1e-3, "no problems seen";
5. four learning rates on one chart (`compare_learning_rates`): too low,
   good, high, too high, and the rate to use.

All runs end up in one HTML report (`keras_trainopt.write_report`).
`KERAS_TRAINOPT_SMOKE=1` shrinks the runs (the test suite sets it).
"""

import os

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_trainopt as kt

SMOKE = os.environ.get("KERAS_TRAINOPT_SMOKE") == "1"
EPOCHS_OVERFITTING = 10 if SMOKE else 40
EPOCHS_SATURATED = 3 if SMOKE else 15
EPOCHS_HEALTHY = 4 if SMOKE else 20
EPOCHS_COMPARE = 2 if SMOKE else 5
LOG_ROOT = "runs/02_monitors_and_doctor"

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
x_train, x_val, y_train, y_val = train_test_split(
    x, y, test_size=0.3, random_state=0, stratify=y)
x_probe = x_val[:256]  # the ActivationMonitor's probe batch


def build_mlp(hidden=(64,), activation="tanh",
              kernel_initializer="glorot_uniform"):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,))]
    for i, units in enumerate(hidden):
        layers.append(keras.layers.Dense(
            units, activation=activation, name=f"hidden{i + 1}",
            kernel_initializer=kernel_initializer))
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    return keras.Sequential(layers)


def train(name, model, learning_rate, x, y, epochs, batch_size=32,
          callbacks=()):
    """Nesterov SGD under a TrainingDoctor (which prints its advice)."""
    print(f"\n=== {name}: learning rate {learning_rate:g}, {len(x)} "
          f"training images, {epochs} epochs")
    log_dir = f"{LOG_ROOT}/{name}"
    model.compile(kt.nesterov_sgd(learning_rate, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    doctor = kt.TrainingDoctor(log_dir, x_probe=x_probe, every=1,
                               update_ratio_every=10)
    history = model.fit(
        x, y, validation_data=(x_val, y_val), epochs=epochs,
        batch_size=batch_size, verbose=0, validation_batch_size=len(x_val),
        callbacks=[*callbacks, doctor, keras.callbacks.TensorBoard(log_dir)])
    return doctor, history


# 1. A learning rate far too high: LossMonitor stops the run.
doctor, history = train("1_learning_rate_too_high", build_mlp(), 1.0,
                        x_train, y_train, epochs=5)
loss = doctor.monitors["loss"]
print(f"LossMonitor: {loss.diagnosis}: {loss.reason}")
print(f"stopped after {len(history.epoch)} of 5 epochs")
suggested = loss.learning_rates[-1] / 10  # the doctor's "try about"
model = build_mlp()
model.compile(kt.nesterov_sgd(suggested, momentum=0.9),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(
    x_train, y_train, validation_data=(x_val, y_val), epochs=2, verbose=0,
    callbacks=[kt.LossMonitor(f"{LOG_ROOT}/1b_a_tenth_of_the_rate", every=1)])
print(f"at the suggested {suggested:.2g}: validation accuracy "
      f"{history.history['val_accuracy'][-1]:.3f} after 2 epochs")

# 2. Overfitting: 300,000 weights, one image per digit, no regularization.
ten = np.array([np.flatnonzero(y_train == digit)[0] for digit in range(10)])
doctor, history = train(
    "2_overfitting", build_mlp(hidden=(512, 512), activation="relu"), 0.05,
    x_train[ten], y_train[ten], epochs=EPOCHS_OVERFITTING, batch_size=5)
fit = doctor.monitors["fit"]
print(f"OverfittingMonitor: {fit.diagnosis}: {fit.reason}")
print(f"gap at the end {fit.gaps[-1]:.2f}; best validation accuracy at epoch "
      f"{fit.best_epoch + 1}")

# 3. A saturated layer: tanh with weights from N(0, 3**2) instead of Glorot.
huge = keras.initializers.RandomNormal(stddev=3.0)
doctor, history = train("3_saturated", build_mlp(kernel_initializer=huge),
                        0.1, x_train, y_train, epochs=EPOCHS_SATURATED)
saturated = doctor.monitors["activations"].stats["hidden1"]
print(f"saturated_fraction of hidden1: {saturated['saturated_fraction']:.0%}; "
      "update ratio "
      f"{doctor.monitors['update_ratio'].layer_ratios['hidden1']:.1e}")

# 4. Healthy: Glorot, all the images, 0.1 halved halfway by StepDecay.
decay = kt.StepDecay(factor=0.5, every=max(1, EPOCHS_HEALTHY // 2))
doctor, history = train("4_healthy", build_mlp(), 0.1, x_train, y_train,
                        epochs=EPOCHS_HEALTHY, callbacks=[decay])
print(f"validation accuracy {history.history['val_accuracy'][-1]:.3f}, gap "
      f"{history.history['generalization_gap'][-1]:+.3f}; update ratios "
      "(healthy ~1e-3): " + ", ".join(
          f"{layer} {ratio:.1e}"
          for layer, ratio in doctor.monitors["update_ratio"].layer_ratios.items()))
healthy = doctor.monitors["activations"].stats["hidden1"]
print(f"saturated_fraction of hidden1: {healthy['saturated_fraction']:.0%}")

# 5. Four learning rates from the same initial weights, on the same batches.


def build_for_comparison():
    model = build_mlp(activation="relu")
    model.compile(kt.nesterov_sgd(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


comparison = kt.compare_learning_rates(
    build_for_comparison, x_train, y_train,
    learning_rates=(1e-4, 1e-2, 0.3, 3.0), epochs=EPOCHS_COMPARE,
    validation_data=(x_val, y_val),
    log_dir=f"{LOG_ROOT}/5_compare_learning_rates")
for rate in comparison.learning_rates:
    print(f"lr={rate:g}: {comparison.diagnoses[rate]}: "
          f"{comparison.reasons[rate]}")
print(f"recommended learning rate: {comparison.recommended:g}")

print(f"\nreport: {kt.write_report(LOG_ROOT)}")
print(f"TensorBoard: tensorboard --logdir {LOG_ROOT}")
