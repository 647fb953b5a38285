"""Quick start as a script: decay, Nesterov SGD and the monitors on digits.

    python examples/quickstart.py            # then: tensorboard --logdir runs/quickstart

Uses scikit-learn's bundled digits (no download). Notebooks follow in
examples/ as the tutorials grow.
"""

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_trainopt as kt

x, y = load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = train_test_split(
    x / 16.0, y, test_size=0.25, random_state=0, stratify=y
)

model = keras.Sequential([
    keras.Input((64,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(kt.nesterov_sgd(0.1, momentum=0.9),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])

log_dir = "runs/quickstart"
loss = kt.LossMonitor(log_dir)
gap = kt.OverfittingMonitor(log_dir=log_dir)
model.fit(
    x_train, y_train, validation_data=(x_val, y_val), epochs=30, verbose=2,
    callbacks=[
        kt.StepDecay(factor=0.5, every=10),   # halve every 10 epochs
        loss, gap,
        kt.UpdateRatioLogger(log_dir),
        kt.ActivationMonitor(x_val[:256], log_dir),
        keras.callbacks.TensorBoard(log_dir),
    ],
)
print("loss:", loss.diagnosis, "-", loss.reason)
print("fit: ", gap.diagnosis, "-", gap.reason)
print(f"tensorboard --logdir {log_dir}")
