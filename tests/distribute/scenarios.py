"""Training runs under `tf.distribute`, each scenario in a fresh process.

Logical CPU devices (and a `MultiWorkerMirroredStrategy`'s collective ops)
must be set up before TensorFlow initializes, so `test_distribute.py` starts
this module as a subprocess, from the repository root:

    python -m tests.distribute.scenarios local OUTDIR CASE [CASE ...]
    python -m tests.distribute.scenarios worker OUTDIR CASE [CASE ...]

`local` splits the CPU into two logical devices and trains each case in
one process in three modes: `single`, on one device (the reference, no
strategy); `mirrored`, under `MirroredStrategy(["/cpu:0", "/cpu:1"])`; and
`xla`, under `OneDeviceStrategy("/cpu:0")` with `jit_compile=True`: the
replica-context code paths a TPU runs, compiled by XLA, which refuses host
reads and callbacks inside the step (the closest check of TPU-safety a CPU
allows: Keras cannot XLA-compile a `MirroredStrategy` step, whose
variables live on two devices).
`worker` is one task of a `MultiWorkerMirroredStrategy` with one CPU; the
caller sets `TF_CONFIG` (the cluster's worker list and this task's index).

A run of case C in mode M writes `<OUTDIR>/<M>/<C>.npz` (arrays) and
`<OUTDIR>/<M>/<C>.json` (everything else), and gives the callbacks the
folder `<OUTDIR>/<M>/<C>/` for their files: TensorBoard logs under `logs/`
and `logs_standalone/`, snapshots under `snapshots/`, the HTML report in
`logs/report.html`.

The model has no BatchNorm (two Dense layers), the data is deterministic,
the initial weights are the same NumPy arrays in every process, the data is
not shuffled, and the global batch of 16 splits evenly across two replicas:
every run computes the same updates as one device, up to float rounding
(see test_distribute.py). Nothing runs at import (pytest imports this
module for its doctests).
"""

import contextlib
import json
import os
import sys
import tempfile
import time
import warnings

GLOBAL_BATCH = 16
STEPS_PER_EPOCH = 4
EPOCHS = 4
TRAIN_SIZE = GLOBAL_BATCH * STEPS_PER_EPOCH
VAL_SIZE = 32
# What each case exercises:
# - averages: the rate set inside the step (StepDecay unit="step"); two
#   averages updated inside the step (EMA every=1, SWA);
# - ensemble: SnapshotEnsemble (its in-step rate, chief-only files), the
#   default EMA (every=8, a conditional update), LossMonitor,
#   OverfittingMonitor and UpdateRatioLogger on their own and inside a
#   TrainingDoctor with an ActivationMonitor, and, in multi-worker runs,
#   the HTML report;
# - epoch_decay: the rate set from the host (ExponentialDecay
#   unit="epoch"), CheckpointEnsemble's chief-only files;
# - swa_rate: SWA with its own cyclic rate, set inside the step.
CASES = ("averages", "ensemble", "epoch_decay", "swa_rate")
NEEDS_VALIDATION = ("ensemble",)


def data():
    """Training and validation arrays, the same in every process."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(TRAIN_SIZE + VAL_SIZE, 8)).astype("float32")
    w = rng.normal(size=(8, 3)).astype("float32")
    y = np.argmax(x @ w + 0.5 * rng.normal(size=(len(x), 3)), axis=1)
    y = y.astype("int32")
    return (x[:TRAIN_SIZE], y[:TRAIN_SIZE]), (x[TRAIN_SIZE:], y[TRAIN_SIZE:])


def initial_weights():
    import numpy as np

    rng = np.random.default_rng(1)
    return [
        rng.normal(scale=0.4, size=(8, 16)).astype("float32"),
        rng.normal(scale=0.1, size=(16,)).astype("float32"),
        rng.normal(scale=0.4, size=(16, 3)).astype("float32"),
        rng.normal(scale=0.1, size=(3,)).astype("float32"),
    ]


def build_model(strategy=None, jit_compile=False):
    """A compiled model made in `strategy`'s scope, fixed initial weights.

    With no `strategy` (the JAX runs, whose distribution is global) the model
    is made as is; pass `jit_compile="auto"` there for Keras' default.
    """
    import keras

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="tanh", name="hidden"),
                keras.layers.Dense(3, activation="softmax", name="out"),
            ]
        )
        model.set_weights(initial_weights())
        model.compile(
            keras.optimizers.SGD(0.1, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
        )
    return model


def datasets(multi_worker, validation):
    """What `fit` gets: arrays, or `tf.data` for the multi-worker runs.

    Multi-worker: every worker builds the same dataset of *global* batches.
    With the auto-shard policy DATA, `tf.distribute` splits each global batch
    of 16 into per-replica batches of 8 and worker i keeps the i-th of them
    (worker 0 rows 0-7, worker 1 rows 8-15 of every global batch), so a step
    of the cluster sees exactly the batch one device sees, and an epoch has
    the same 4 steps. With OFF every worker would iterate over the whole
    dataset in per-replica batches of 8: both workers would train on the
    same half-batch at each step, an epoch would take 8 steps, and the
    result would not be the single-device one. (AUTO falls back to DATA
    here, since the dataset reads no files; Keras sets DATA itself for
    NumPy input.)
    """
    (x, y), (x_val, y_val) = data()
    if not multi_worker:
        feed = {"x": x, "y": y, "batch_size": GLOBAL_BATCH}
        if validation:
            feed["validation_data"] = (x_val, y_val)
        return feed
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )

    def batches(a, b):
        dataset = tf.data.Dataset.from_tensor_slices((a, b))
        return dataset.batch(GLOBAL_BATCH).with_options(options)

    feed = {"x": batches(x, y)}
    if validation:
        feed["validation_data"] = batches(x_val, y_val)
    return feed


def rate_recorder():
    """A callback that reads, before every batch, the rate its update uses."""
    import keras

    class RateRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates = []

        def on_train_batch_begin(self, batch, logs=None):
            rate = self.model.optimizer.learning_rate
            self.rates.append(float(keras.ops.convert_to_numpy(rate)))

    return RateRecorder()


def callbacks_for(case, workdir, x_probe):
    """The callbacks of `case`, by name, in the order `fit` gets them."""
    import keras_trainopt as kt

    logs = os.path.join(workdir, "logs")
    standalone = os.path.join(workdir, "logs_standalone")
    snapshots = os.path.join(workdir, "snapshots")
    if case == "averages":
        return {
            "decay": kt.StepDecay(factor=0.5, every=6, unit="step"),
            "ema": kt.ExponentialMovingAverage(decay=0.9, every=1),
            "swa": kt.StochasticWeightAveraging(start_epoch=1,
                                                apply_at_end=False),
        }
    if case == "ensemble":
        return {
            "snapshot": kt.SnapshotEnsemble(cycles=2, directory=snapshots),
            "ema": kt.ExponentialMovingAverage(decay=0.9, every=8,
                                               apply_at_end=False),
            "loss": kt.LossMonitor(standalone, every=1, min_steps=4,
                                   verbose=0),
            "fit": kt.OverfittingMonitor("accuracy", log_dir=standalone,
                                         verbose=0),
            "update_ratio": kt.UpdateRatioLogger(standalone, every=3,
                                                 verbose=0),
            "doctor": kt.TrainingDoctor(
                logs, x_probe, every=2, update_ratio_every=2, verbose=0
            ),
        }
    if case == "epoch_decay":
        return {
            "decay": kt.ExponentialDecay(decay=0.3, unit="epoch"),
            "checkpoints": kt.CheckpointEnsemble(every=1, keep=2,
                                                 directory=snapshots),
        }
    if case == "swa_rate":
        return {
            "swa": kt.StochasticWeightAveraging(
                start_epoch=1, swa_learning_rate=(0.05, 0.01)
            )
        }
    raise ValueError(f"unknown case {case!r}")


def variable_kinds(model, callbacks):
    """The class names of the variables our callbacks use in the step.

    The optimizer's (the averages are attached to it during `fit`) and the
    update probes'. Under a strategy they must all be distributed: made in
    its scope (a TPU has no other kind).
    """
    names = set()
    for variable in model.optimizer.variables:
        names.add(type(variable.value).__name__)
    for callback in callbacks.values():
        monitors = getattr(callback, "monitors", {"self": callback})
        for monitor in monitors.values():
            probe = getattr(monitor, "_probe", None)
            for name in ("_ratios", "_step"):
                if probe is not None and hasattr(probe, name):
                    names.add(type(getattr(probe, name).value).__name__)
    return names


def run_case(case, strategy, workdir, multi_worker=False, jit_compile=False):
    """Trains `case` under `strategy`; returns (arrays, facts) to save."""
    import keras
    import numpy as np

    os.makedirs(workdir, exist_ok=True)
    model = build_model(strategy, jit_compile=jit_compile)
    if multi_worker:
        from keras_trainopt.distribute import patch_keras_for_multi_worker

        patch_keras_for_multi_worker(model)
    feed = datasets(multi_worker, validation=case in NEEDS_VALIDATION)
    x_probe = data()[1][0][:16]
    callbacks = callbacks_for(case, workdir, x_probe)
    recorder = rate_recorder()
    kinds = set()

    class KindRecorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kinds.update(variable_kinds(self.model, callbacks))

    history = model.fit(
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[*callbacks.values(), recorder, KindRecorder()],
        **feed,
    )
    arrays = {f"final/{i}": w for i, w in enumerate(model.get_weights())}
    facts = {
        "history": {k: [float(v) for v in vs]
                    for k, vs in history.history.items()},
        "rates": recorder.rates,
        "iterations": int(keras.ops.convert_to_numpy(
            model.optimizer.iterations)),
        "variable_kinds": sorted(kinds),
        "jit_compile": bool(model.jit_compile),
        "tempdir": tempfile.gettempdir(),
    }
    for name, callback in callbacks.items():
        if name in ("ema", "swa"):
            for i, w in enumerate(callback.averaged_weights()):
                arrays[f"{name}_average/{i}"] = w
            for i, w in enumerate(callback.raw_weights()):
                arrays[f"{name}_raw/{i}"] = w
            facts[f"{name}_num_averaged"] = callback.num_averaged
        if name in ("snapshot", "checkpoints"):
            facts[f"{name}_steps"] = callback.snapshot_steps
            for k, snapshot in enumerate(callback.snapshots):
                for i, w in enumerate(snapshot):
                    arrays[f"{name}/{k}/{i}"] = w
            arrays.update(snapshot_files(name, callback.directory))
        if name in ("loss", "fit", "update_ratio"):
            facts.update(monitor_facts("", {name: callback}))
        if name == "doctor":
            facts.update(monitor_facts("doctor_", callback.monitors))
            facts["doctor_advice"] = [a.message for a in callback.advice]
    if multi_worker and case == "ensemble":
        # as a user's script would, on every worker
        from keras_trainopt import write_report

        facts["report"] = write_report(os.path.join(workdir, "logs"))
    facts["files"] = sorted(
        os.path.relpath(os.path.join(root, f), workdir)
        for root, _, names in os.walk(workdir)
        for f in names
    )
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    return arrays, facts


def snapshot_files(name, directory):
    """The weights in each snapshot file, loaded into a fresh model."""
    import tensorflow as tf

    arrays = {}
    if not os.path.isdir(directory):
        return arrays
    for k, file in enumerate(sorted(os.listdir(directory))):
        model = build_model(tf.distribute.get_strategy())
        with warnings.catch_warnings():
            # the file also holds the optimizer's state; this model's
            # optimizer is not built, so Keras skips it, with a warning
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(os.path.join(directory, file))
        for i, w in enumerate(model.get_weights()):
            arrays[f"{name}_file/{k}/{i}"] = w
    return arrays


def monitor_facts(prefix, monitors):
    """What the monitors recorded, keyed `<prefix><monitor>_<what>`."""
    facts = {}
    loss = monitors.get("loss")
    if loss is not None:
        facts[prefix + "loss_steps"] = loss.steps
        facts[prefix + "loss_losses"] = loss.losses
        facts[prefix + "loss_rates"] = loss.learning_rates
        facts[prefix + "loss_diagnosis"] = loss.diagnosis
    fit = monitors.get("fit")
    if fit is not None:
        facts[prefix + "fit_gaps"] = list(fit.gaps)
        facts[prefix + "fit_diagnosis"] = fit.diagnosis
        facts[prefix + "fit_best_epoch"] = fit.best_epoch
    ratio = monitors.get("update_ratio")
    if ratio is not None:
        facts[prefix + "ratio_steps"] = {
            key: [int(s) for s, _ in points]
            for key, points in ratio.history.items()
        }
        facts[prefix + "ratio_values"] = {
            key: [float(r) for _, r in points]
            for key, points in ratio.history.items()
        }
    activations = monitors.get("activations")
    if activations is not None:
        facts[prefix + "activation_stats"] = {
            layer: {k: stats[k] for k in ("mean", "std", "saturated_fraction")}
            for layer, stats in activations.stats.items()
        }
    return facts


def save(outdir, mode, case, arrays, facts):
    import numpy as np

    folder = os.path.join(outdir, mode)
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, f"{case}.npz"), **arrays)
    with open(os.path.join(folder, f"{case}.json"), "w") as f:
        json.dump(facts, f, default=_jsonable)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {value!r}")


def setup_tensorflow(logical_cpus):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    # fewer threads than the default: quicker on a small, shared machine
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    if logical_cpus > 1:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
    return tf


def run_and_save(outdir, mode, case, strategy, **kwargs):
    start = time.perf_counter()
    arrays, facts = run_case(
        case, strategy, os.path.join(outdir, mode, case), **kwargs
    )
    facts["seconds"] = time.perf_counter() - start
    facts["num_replicas"] = strategy.num_replicas_in_sync
    save(outdir, mode, case, arrays, facts)


def main(argv):
    scenario, outdir, *cases = argv
    for case in cases:
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; cases: {CASES}")
    if scenario == "local":
        tf = setup_tensorflow(logical_cpus=2)
        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
        for case in cases:
            run_and_save(outdir, "single", case, tf.distribute.get_strategy())
            run_and_save(outdir, "mirrored", case, mirrored)
            run_and_save(outdir, "xla", case, one_device, jit_compile=True)
    elif scenario == "worker":
        tf = setup_tensorflow(logical_cpus=1)
        # Made first: it sets up the cluster's collective ops.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        for case in cases:
            run_and_save(outdir, f"worker{index}", case, strategy,
                         multi_worker=True)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
