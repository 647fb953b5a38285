"""A training process for the kill-and-resume tests (run as a script).

    python resume_worker.py SCENARIO WORKDIR [--die-in-write N]
        [--save-freq N] [--shuffle]

Trains a small model with every stateful keras_trainopt callback and
`keras_trainopt.BackupAndRestore(WORKDIR/backup)`, printing "batch" after each
update so that the test can SIGKILL it at a chosen step. A run that reaches
the end writes WORKDIR/result.npz: the weights, the averages, the learning
rate, the step count and every callback's state (as JSON). Each start after
a kill resumes from the backup.

`--save-freq N` backs up every N updates (mid-epoch backups) instead of
each epoch; `--shuffle` trains with `shuffle=True` (the script seeds
everything with `keras.utils.set_random_seed`, as a reproducible script
does). The worker prints "start <updates>" once the backup is loaded (the
updates it resumes from) and "batch <updates>" after every update.

`--die-in-write N` makes the process kill itself in the middle of its N-th
backup file write, after half the bytes of the temporary file are written
and before the rename: the torn write a kill can cause.
"""

import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from keras_trainopt._internal import atomic  # noqa: E402
from keras_trainopt._internal import callback_state  # noqa: E402

EPOCHS = 8
BATCH = 16
SAMPLES = 64  # 4 updates per epoch
STEPS_PER_EPOCH = SAMPLES // BATCH


def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES + 32, 8)).astype("float32")
    y = (np.tanh(x[:, :3]).sum(axis=1) > 0).astype("int32")
    return (x[:SAMPLES], y[:SAMPLES]), (x[SAMPLES:], y[SAMPLES:])


def build_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="tanh", name="hidden"),
            keras.layers.Dropout(0.2, seed=5),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    model.compile(
        kt.nesterov_sgd(0.2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def callbacks(scenario, workdir, x_probe, save_freq="epoch"):
    """The callbacks under test; `BackupAndRestore` sits in the middle."""
    backup = kt.BackupAndRestore(os.path.join(workdir, "backup"),
                                 save_freq=save_freq)
    logs = os.path.join(workdir, "logs")
    if scenario == "monitors":
        return [
            kt.StepDecay(0.2, factor=0.5, every=3),
            kt.ExponentialMovingAverage(0.9, every=1),
            backup,
            kt.StochasticWeightAveraging(start_epoch=4),
            kt.CheckpointEnsemble(every=2, keep=3),
            kt.TrainingDoctor(logs, x_probe, every=1, update_ratio_every=2,
                              verbose=0),
            kt.LossMonitor(every=3, verbose=0),
            kt.OverfittingMonitor("accuracy", restore_best_weights=True,
                                  verbose=0),
            kt.UpdateRatioLogger(every=2, verbose=0),
            kt.ActivationMonitor(x_probe, verbose=0),
        ]
    if scenario == "schedules":
        return [
            backup,
            kt.SnapshotEnsemble(cycles=3, directory=os.path.join(workdir, "snap")),
            kt.ExponentialMovingAverage(0.8, every=3),
        ]
    if scenario == "step_decay":
        return [
            kt.InverseTimeDecay(0.2, decay=0.05, unit="step"),
            kt.LossMonitor(every=1, verbose=0),
            backup,
        ]
    raise SystemExit(f"unknown scenario {scenario}")


def updates(model):
    """The optimizer's update count (JAX: from the live state, synced)."""
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class Progress(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        print("start", updates(self.model), flush=True)

    def on_train_batch_end(self, batch, logs=None):
        print("batch", updates(self.model), flush=True)


def die_in_write(n):
    """Kills this process half-way through its n-th backup file write."""
    original = atomic.write_atomically
    calls = [0]

    def torn(path, write):
        calls[0] += 1
        if calls[0] < n:
            return original(path, write)
        partial = atomic.partial_path(path)
        write(partial)
        size = os.path.getsize(partial)
        with open(partial, "r+b") as f:
            f.truncate(size // 2)
        print("dying in write", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    atomic.write_atomically = torn


def final_state(model, cbs):
    result = {
        "weights": [np.asarray(w) for w in model.get_weights()],
        "learning_rate": float(
            keras.ops.convert_to_numpy(model.optimizer.learning_rate)
        ),
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }
    states = {}
    for name, callback in callback_state.keyed(cbs).items():
        if hasattr(callback, "get_state") and not isinstance(
            callback, keras.callbacks.BackupAndRestore
        ):
            states[name] = callback.get_state()
    text, arrays = callback_state.encode(states)
    return result, text, arrays


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("workdir")
    parser.add_argument("--die-in-write", type=int, default=0)
    parser.add_argument("--save-freq", type=int, default=0)
    parser.add_argument("--shuffle", action="store_true")
    args = parser.parse_args()
    if args.die_in_write:
        die_in_write(args.die_in_write)
    (x, y), (x_val, y_val) = data()
    model = build_model()
    cbs = callbacks(args.scenario, args.workdir, x_val[:16],
                    args.save_freq or "epoch")
    model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=args.shuffle, verbose=0,
        validation_data=(x_val, y_val), callbacks=cbs + [Progress()],
    )
    result, text, arrays = final_state(model, cbs)
    np.savez(
        os.path.join(args.workdir, "result.npz"),
        learning_rate=result["learning_rate"],
        iterations=result["iterations"],
        states=np.array(text),
        **{f"w{i}": w for i, w in enumerate(result["weights"])},
        **{f"s_{k}": v for k, v in arrays.items()},
    )
    print("done", flush=True)


if __name__ == "__main__":
    sys.exit(main())
