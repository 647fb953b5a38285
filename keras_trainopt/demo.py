"""The demo: a small network on scikit-learn's bundled 8x8 digits.

Run it with `python -m keras_trainopt demo` (or `keras-trainopt demo`). It
trains with `nesterov_sgd` and `StepDecay`, watched by a `TrainingDoctor`
(the four monitors: `LossMonitor`, `OverfittingMonitor`, `UpdateRatioLogger`,
`ActivationMonitor`), keeps an `ExponentialMovingAverage` of the weights and
tests both the final weights and their average (logged with `log_results`).
It writes TensorBoard logs, `summary.json`, a Markdown report and, last, the
HTML report of `write_report` under `./runs/<timestamp>/`, and prints where
they are. Nothing is downloaded: the digits ship inside scikit-learn.

It runs on every Keras backend. The per-epoch logs come from Keras'
`TensorBoard` callback on TensorFlow; on JAX and PyTorch (where that callback
needs TensorFlow installed) `_EpochLogs` writes the same tags through the
library's own TensorBoard writer.
"""

import datetime
import json
import os
import shlex
import shutil
import sys
import time

import keras

from keras_trainopt.reporting import close_run
from keras_trainopt.reporting import open_run


def load_digits_split(seed=0):
    """Digits scaled to [0, 1], split 60/20/20 into train, validation, test."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "The demo needs scikit-learn for its bundled digits data: "
            "pip install 'keras-trainopt[demo]'"
        ) from error
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def build_model(hidden=64):
    """The demo network: 64 -> hidden (ReLU) -> 10 (softmax)."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hidden, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="output"),
        ],
        name="digits_mlp",
    )


class _EpochLogs(keras.callbacks.Callback):
    """Writes each epoch's logs as `keras.callbacks.TensorBoard` does.

    `epoch_<name>` at step `epoch` in the run `train`, `val_<name>` as
    `epoch_<name>` in the run `validation`, and the optimizer's learning
    rate as `epoch_learning_rate`; through `open_run`, so without
    TensorFlow. Private to the demo: other backends' users add Keras'
    callback (with TensorFlow installed) or their own.

    Args:
        log_dir: the folder that gets the `train` and `validation` runs.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self._writers = None

    def on_train_begin(self, logs=None):
        self._writers = {run: open_run(self.log_dir, run)
                         for run in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        if "learning_rate" not in train and isinstance(
            self.model.optimizer, keras.optimizers.Optimizer
        ):
            train["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
        runs = {"train": train,
                "validation": {k[4:]: v for k, v in logs.items()
                               if k.startswith("val_")}}
        for run, values in runs.items():
            writer = self._writers[run]
            if writer is not None and values:
                writer.write(epoch, scalars={f"epoch_{name}": float(value)
                                             for name, value in values.items()})

    def on_train_end(self, logs=None):
        for writer in (self._writers or {}).values():
            close_run(writer)
        self._writers = None


def _epoch_logger(run_dir):
    """Keras' `TensorBoard` callback on TensorFlow, `_EpochLogs` elsewhere."""
    if keras.backend.backend() == "tensorflow":
        return keras.callbacks.TensorBoard(log_dir=run_dir)
    return _EpochLogs(run_dir)


def _tensorboard_command():
    """How to start TensorBoard from here, as a shell command.

    The `tensorboard` script installed beside this Python: a virtual
    environment's `bin/` is often not on PATH (the README runs the demo as
    `.venv/bin/python -m keras_trainopt demo`). Relative to the working
    folder when it lies below it, so the line stays short.
    """
    script = shutil.which("tensorboard", path=os.path.dirname(sys.executable))
    if script is None:
        return f"{shlex.quote(sys.executable)} -m tensorboard.main"
    if shutil.which("tensorboard") == script:
        return "tensorboard"
    try:
        relative = os.path.relpath(script)
    except ValueError:  # pragma: no cover - another drive, on Windows
        relative = os.pardir
    if relative.startswith(os.pardir):
        return shlex.quote(script)
    if os.sep not in relative:
        relative = os.path.join(os.curdir, relative)
    return shlex.quote(relative)


def make_run_dir(logdir):
    """A fresh `<logdir>/<timestamp>` folder; never reuses an existing one."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in [""] + [f"-{i}" for i in range(1, 1000)]:
        path = os.path.join(logdir, stamp + suffix)
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a new run folder in {logdir!r}")


def run_demo(epochs=30, logdir="runs", seed=0, verbose=1):
    """Trains the demo network and returns a summary dict.

    Args:
        epochs: number of training epochs.
        logdir: parent folder of the run folder.
        seed: seed of the data split and of the weights.
        verbose: 0 silent, 1 progress and summary.

    Returns:
        The summary (also written to `summary.json`), with `report_html`,
        the path of the HTML report of the run's TensorBoard logs.
    """
    import keras_trainopt as kt
    from keras_trainopt._internal import console
    from keras_trainopt.reporting import log_results
    from keras_trainopt.reporting import write_report

    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_digits_split(
        seed
    )
    run_dir = make_run_dir(logdir)
    model = build_model()
    initial_learning_rate = 0.1
    model.compile(
        optimizer=kt.nesterov_sgd(initial_learning_rate, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    decay = kt.StepDecay(factor=0.5, every=max(1, epochs // 3))
    # the four monitors in one callback; at train end it turns what they saw
    # into advice (TensorBoard text `doctor/advice`, shown in the report)
    doctor = kt.TrainingDoctor(run_dir, x_probe=x_val[:256], every=1,
                               update_ratio_every=10, verbose=0)
    monitors = doctor.monitors
    # ~34 updates per epoch: a decay of 0.99 remembers about 3 epochs
    ema = kt.ExponentialMovingAverage(decay=0.99, every=1, apply_at_end=False)
    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=32,
        callbacks=[
            decay,
            doctor,
            ema,
            _epoch_logger(run_dir),
        ],
        verbose=2 if verbose else 0,
    )
    seconds = time.perf_counter() - started
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    # with the callback, evaluate swaps the average in, then back
    ema_test_loss, ema_test_accuracy = model.evaluate(
        x_test, y_test, verbose=0, callbacks=[ema]
    )
    log_results(run_dir, {
        "test_accuracy/final": test_accuracy,
        "test_accuracy/ema": ema_test_accuracy,
        "test_loss/final": test_loss,
        "test_loss/ema": ema_test_loss,
    })
    summary = {
        "run_dir": run_dir,
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "optimizer": "nesterov_sgd(0.1, momentum=0.9)",
        "decay": "StepDecay(factor=0.5, every=%d)" % decay.get_config()["every"],
        "final_learning_rate": history.history["learning_rate"][-1],
        "train_accuracy": history.history["accuracy"][-1],
        "val_accuracy": history.history["val_accuracy"][-1],
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "ema_test_accuracy": float(ema_test_accuracy),
        "loss_diagnosis": [monitors["loss"].diagnosis, monitors["loss"].reason],
        "fit_diagnosis": [monitors["fit"].diagnosis, monitors["fit"].reason],
        "update_ratios": monitors["update_ratio"].layer_ratios,
        "activations": {
            name: {
                key: stats[key]
                for key in ("mean", "std", "saturated_fraction",
                            "dead_fraction")
            }
            for name, stats in monitors["activations"].stats.items()
        },
        "advice": [str(advice) for advice in doctor.advice],
    }
    _write_report(run_dir, summary, history.history)
    # last, so that it reads everything the run wrote
    summary["report_html"] = write_report(run_dir)
    if verbose:
        console.print_msg(_summary_text(summary))
    return summary


def _write_report(run_dir, summary, history):
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = [
        "# keras_trainopt demo report",
        "",
        f"- optimizer: `{summary['optimizer']}`",
        f"- decay: `{summary['decay']}`",
        f"- test accuracy: {summary['test_accuracy']:.4f} (final weights), "
        f"{summary['ema_test_accuracy']:.4f} (their exponential moving "
        "average, `ExponentialMovingAverage(decay=0.99, every=1)`)",
        f"- training time: {summary['seconds']:.1f} s",
        "",
        "## What the monitors say",
        "",
        f"- LossMonitor: **{summary['loss_diagnosis'][0]}**: "
        f"{summary['loss_diagnosis'][1]}",
        f"- OverfittingMonitor: **{summary['fit_diagnosis'][0]}**: "
        f"{summary['fit_diagnosis'][1]}",
        "- UpdateRatioLogger (healthy ~1e-3): "
        + ", ".join(
            f"{layer} {ratio:.2g}"
            for layer, ratio in summary["update_ratios"].items()
        ),
        "- ActivationMonitor: "
        + ", ".join(
            f"{layer} " + ", ".join(
                f"{key.split('_')[0]} {value:.0%}"
                for key, value in stats.items()
                if key.endswith("fraction") and value is not None
            )
            for layer, stats in summary["activations"].items()
            if any(key.endswith("fraction") and value is not None
                   for key, value in stats.items())
        ),
        "",
        "## Epochs",
        "",
        "| epoch | learning rate | loss | accuracy | val loss | val accuracy "
        "| gap |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(history["loss"])):
        lines.append(
            f"| {i + 1} | {history['learning_rate'][i]:.6g} "
            f"| {history['loss'][i]:.4f} | {history['accuracy'][i]:.4f} "
            f"| {history['val_loss'][i]:.4f} "
            f"| {history['val_accuracy'][i]:.4f} "
            f"| {history['generalization_gap'][i]:+.4f} |"
        )
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _summary_text(summary):
    return "\n".join(
        [
            "",
            "keras_trainopt demo: digits, "
            f"{summary['optimizer']} + {summary['decay']}",
            f"  epochs: {summary['epochs']} in {summary['seconds']:.1f} s",
            f"  final learning rate: {summary['final_learning_rate']:.6g}",
            f"  accuracy  train {summary['train_accuracy']:.4f}  "
            f"val {summary['val_accuracy']:.4f}  "
            f"test {summary['test_accuracy']:.4f}  "
            f"(EMA of the weights: test {summary['ema_test_accuracy']:.4f})",
            f"  LossMonitor: {summary['loss_diagnosis'][0]}; "
            f"OverfittingMonitor: {summary['fit_diagnosis'][0]}",
            "  TrainingDoctor: " + "; ".join(summary["advice"]),
            "  update ratio per layer (healthy ~1e-3): "
            + ", ".join(
                f"{layer} {ratio:.2g}"
                for layer, ratio in summary["update_ratios"].items()
            ),
            f"  report: {summary['report_html']}",
            (f"  open TensorBoard: {_tensorboard_command()} --logdir "
             f"{shlex.quote(summary['run_dir'])}"),
        ]
    )
