"""What a preemption-proof run costs: one backup, and resuming at batch k.

    python benchmarks/resume_cost.py                 # both tables
    python benchmarks/resume_cost.py --part backup   # time and size of one backup
    python benchmarks/resume_cost.py --part resume --steps 1000

`backup`: the time and disk size of one `BackupAndRestore` backup (Adam:
weights plus two slots each) for the benchmark MLP (784-512-512-10, 0.67M
parameters) and a 784-4096-4096-1000 MLP (24.1M parameters), median of 5
writes, fsync included.

`resume`: a mid-epoch backup is taken after k steps of a `--steps`-step
epoch (batch 32, the benchmark MLP); a new `fit` resumes it. Reported: the
time from the resumed epoch's begin to its first trained step (the skipping
of the k batches already done), per skipped batch, next to the time of one
trained step, for NumPy arrays, a `keras.utils.PyDataset` (its batches
sliced from arrays, or taking 5 ms each to load, as a decode would) and
(TensorFlow) a `tf.data.Dataset`.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainopt as kt  # noqa: E402

BATCH = 32


def big_mlp():
    """784-4096-4096-1000: 24.1M parameters."""
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(4096, activation="relu"),
        keras.layers.Dense(4096, activation="relu"),
        keras.layers.Dense(1000),
    ])


def compiled(model):
    model.compile(keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class TimeBackups(keras.callbacks.Callback):
    """Writes `repeats` backups at train begin, timing each."""

    def __init__(self, backup, repeats):
        super().__init__()
        self.backup, self.repeats, self.times = backup, repeats, []

    def on_train_begin(self, logs=None):
        for _ in range(self.repeats):
            start = time.perf_counter()
            self.backup._save_model(0, 0)
            self.times.append(time.perf_counter() - start)


def backup_cost(repeats=5):
    rows = []
    for name, make, classes in [("benchmark MLP", harness.mlp, 10),
                                ("784-4096-4096-1000 MLP", big_mlp, 1000)]:
        model = compiled(make())
        x = np.random.default_rng(0).normal(size=(BATCH, 784)).astype("float32")
        y = np.random.default_rng(1).integers(0, classes, size=BATCH)
        folder = tempfile.mkdtemp()
        backup = kt.BackupAndRestore(folder, delete_checkpoint=False,
                                     double_checkpoint=False)
        timer = TimeBackups(backup, repeats)
        model.fit(x, y, epochs=1, verbose=0, callbacks=[backup, timer])
        times = timer.times
        (_, path), = backup._backups()
        rows.append((name, model.count_params(), statistics.median(times),
                     os.path.getsize(path)))
        shutil.rmtree(folder)
    print("| model | parameters | one backup (median of 5) | file size |")
    print("|---|---|---|---|")
    for name, params, seconds, size in rows:
        print(f"| {name} | {params / 1e6:.2f}M | {seconds * 1000:.0f} ms | "
              f"{size / 2**20:.1f} MiB |")


class Batches(keras.utils.PyDataset):
    """Batches of arrays; `load_seconds` stands for reading and decoding."""

    def __init__(self, x, y, load_seconds=0.0):
        super().__init__()
        self.x, self.y, self.load_seconds = x, y, load_seconds

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, i):
        if self.load_seconds:
            time.sleep(self.load_seconds)
        part = slice(i * BATCH, (i + 1) * BATCH)
        return self.x[part], self.y[part]


def data(kind, x, y):
    if kind == "arrays":
        return {"x": x, "y": y, "batch_size": BATCH}
    if kind == "PyDataset":
        return {"x": Batches(x, y)}
    if kind == "PyDataset (5 ms load)":
        return {"x": Batches(x, y, load_seconds=0.005)}
    import tensorflow as tf

    return {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)}


class Stop(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.at:
            raise KeyboardInterrupt


class FirstStep(keras.callbacks.Callback):
    """Times the resumed epoch's begin to its first step, and the steps."""

    def on_epoch_begin(self, epoch, logs=None):
        self.begun = time.perf_counter()
        self.first = None
        self.stamps = []

    def on_train_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.begun
        self.stamps.append(now)


KINDS = ["arrays", "PyDataset", "PyDataset (5 ms load)", "tf.data"]


def resume_cost(steps, ks, kinds):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, 784)).astype("float32")
    y = rng.integers(0, 10, size=steps * BATCH)
    if keras.backend.backend() != "tensorflow":
        kinds = [kind for kind in kinds if kind != "tf.data"]
    print(f"| data | k (of {steps}) | begin to first step | per skipped batch "
          "| one trained step |")
    print("|---|---|---|---|---|")
    for kind in kinds:
        for k in ks:
            folder = tempfile.mkdtemp()
            model = compiled(harness.mlp())
            if k:
                try:
                    model.fit(**data(kind, x, y), epochs=1, verbose=0,
                              shuffle=False,
                              callbacks=[kt.BackupAndRestore(folder, save_freq=k),
                                         Stop(k + 1)])
                except KeyboardInterrupt:
                    pass
            timer = FirstStep()
            backup = kt.BackupAndRestore(folder)
            model = compiled(harness.mlp())
            model.fit(**data(kind, x, y), epochs=1, verbose=0, shuffle=False,
                      callbacks=[backup, timer])
            assert (backup.restored_step or 0) == k, backup.restored_step
            step = statistics.median(np.diff(timer.stamps[1:]))
            per = "" if not k else f"{timer.first / k * 1e6:.0f} µs"
            print(f"| {kind} | {k} | {timer.first * 1000:.0f} ms | {per} | "
                  f"{step * 1000:.2f} ms |")
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["backup", "resume", "all"],
                        default="all")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=KINDS)
    args = parser.parse_args(argv)
    print(f"backend: {keras.backend.backend()}\n")
    if args.part in ("backup", "all"):
        backup_cost()
        print()
    if args.part in ("resume", "all"):
        resume_cost(args.steps, [0, args.steps // 4, args.steps // 2,
                                 args.steps * 9 // 10], args.kinds)


if __name__ == "__main__":
    main()
