"""Quick start as a script: learning-rate decay and Nesterov SGD on digits.

The script version of `01_quickstart.ipynb`:

    python examples/01_quickstart.py     # then: tensorboard --logdir runs/01_quickstart

1. The three decay callbacks, `lr0 * factor ** floor(t / every)`,
   `lr0 * exp(-decay * t)` and `lr0 / (1 + decay * t)`, checked against
   Keras's own schedule classes.
2. `nesterov_sgd` against plain SGD and classic momentum on an
   ill-conditioned quadratic bowl.
3. A 64-64-10 network trained on scikit-learn's bundled digits (no download)
   with `StepDecay` and Keras's `TensorBoard` callback; the learning rate of
   every epoch is in `History` and TensorBoard (`epoch_learning_rate`).

`KERAS_TRAINOPT_SMOKE=1` shrinks the run (the test suite sets it).
"""

import os

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_trainopt as kt

SMOKE = os.environ.get("KERAS_TRAINOPT_SMOKE") == "1"
EPOCHS = 6 if SMOKE else 30
LOG_DIR = "runs/01_quickstart"

# 1. Three decays from lr0 = 0.1, and the Keras schedule equal to each.
LR0 = 0.1
schedules = keras.optimizers.schedules
decays = {
    "StepDecay(factor=0.5, every=10)": (
        kt.StepDecay(LR0, factor=0.5, every=10),
        schedules.ExponentialDecay(LR0, decay_steps=10, decay_rate=0.5,
                                   staircase=True)),
    "ExponentialDecay(decay=0.07)": (
        kt.ExponentialDecay(LR0, decay=0.07),
        schedules.ExponentialDecay(LR0, decay_steps=1,
                                   decay_rate=np.exp(-0.07))),
    "InverseTimeDecay(decay=0.1)": (
        kt.InverseTimeDecay(LR0, decay=0.1),
        schedules.InverseTimeDecay(LR0, decay_steps=1, decay_rate=0.1)),
}
print("1. Learning-rate decay")
for label, (decay, keras_schedule) in decays.items():
    ours = np.array([decay.learning_rate(t) for t in range(30)])
    theirs = np.array([float(keras_schedule(t)) for t in range(30)])
    difference = np.max(np.abs(ours - theirs) / theirs)
    assert difference < 1e-5, (label, difference)
    print(f"  {label:33s} epochs 0/10/20/29: "
          + " ".join(f"{rate:.4f}" for rate in ours[[0, 10, 20, 29]])
          + f"  (max relative difference to Keras {difference:.1e})")

# 2. f(w) = (w1**2 + 25 * w2**2) / 2, 100 steps at the same rate.
curvature = np.array([1.0, 25.0], dtype="float32")


def final_loss(optimizer, steps=100):
    w = keras.Variable(np.array([-1.0, 0.6], dtype="float32"))
    for _ in range(steps):
        optimizer.apply([curvature * w.numpy()], [w])  # the gradient of f
    return 0.5 * float(np.sum(curvature * w.numpy() ** 2))


print("2. An ill-conditioned bowl, 100 steps at learning rate 0.03")
for label, optimizer in {
    "SGD": keras.optimizers.SGD(0.03),
    "SGD, momentum 0.9": keras.optimizers.SGD(0.03, momentum=0.9),
    "nesterov_sgd, momentum 0.9": kt.nesterov_sgd(0.03, momentum=0.9),
}.items():
    print(f"  {label:27s} final loss {final_loss(optimizer):.1e}")

# 3. Digits, Nesterov SGD at 0.1, halved every third of the run.
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
x_train, x_val, y_train, y_val = train_test_split(
    x, y, test_size=0.25, random_state=0, stratify=y)
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((64,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(kt.nesterov_sgd(0.1, momentum=0.9),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
decay = kt.StepDecay(factor=0.5, every=max(1, EPOCHS // 3))
history = model.fit(
    x_train, y_train, validation_data=(x_val, y_val), epochs=EPOCHS,
    batch_size=32, verbose=0,
    callbacks=[decay, keras.callbacks.TensorBoard(LOG_DIR)],
)
rates = history.history["learning_rate"]
assert np.allclose(rates, [decay.learning_rate(t) for t in history.epoch],
                   rtol=1e-6)
print(f"3. Digits, {EPOCHS} epochs: training accuracy "
      f"{history.history['accuracy'][-1]:.3f}, validation accuracy "
      f"{history.history['val_accuracy'][-1]:.3f}")
print("  learning rate (History, = StepDecay's formula): "
      + ", ".join(f"{rate:.4g} from epoch {t + 1}"
                  for t, rate in enumerate(rates)
                  if t == 0 or rate != rates[t - 1]))
print(f"  TensorBoard: tensorboard --logdir {LOG_DIR}")
