"""Overhead of keras_trainopt callbacks relative to plain `model.fit`.

    python benchmarks/overhead.py --suite decay --model mlp --rounds 20 --steps 100
    python benchmarks/overhead.py --suite monitors --model mlp --rounds 15
    python benchmarks/overhead.py --suite averaging --model mlp --rounds 20 --steps 100
    python benchmarks/overhead.py --suite monitors --only UpdateRatio --model mlp
    python benchmarks/overhead.py --suite backup --model mlp --rounds 15 --steps 100

Prints one Markdown table per model: the median over rounds of the ratio of
step time with the callback to plain `fit` in the same round (see harness.py).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import keras  # noqa: E402

import keras_trainopt as kt  # noqa: E402

LR = 0.01


def sgd():
    return kt.nesterov_sgd(LR)


def decay_suite(steps):
    """Issue 2: the decay callbacks, and the same decay inside the optimizer."""
    return [
        harness.Variant(
            "StepDecay(unit='epoch')",
            sgd,
            lambda: [kt.StepDecay(LR, factor=0.5, every=10)],
        ),
        harness.Variant(
            "ExponentialDecay(unit='step')",
            sgd,
            lambda: [kt.ExponentialDecay(LR, decay=1e-4, unit="step")],
        ),
        harness.Variant(
            "StepDecay(unit='step')",
            sgd,
            lambda: [kt.StepDecay(LR, factor=0.5, every=1000, unit="step")],
        ),
        harness.Variant("plain fit (own model, control)", sgd, own_model=True),
        harness.Variant(
            "ExponentialDecay.to_schedule() (own model)",
            lambda: kt.nesterov_sgd(
                kt.ExponentialDecay(LR, decay=1e-4, unit="step").to_schedule()
            ),
            own_model=True,
        ),
        harness.Variant(
            "keras LearningRateScheduler (reference)",
            sgd,
            lambda: [keras.callbacks.LearningRateScheduler(lambda e, lr: lr)],
        ),
    ]


def monitors_suite(steps, x_probe, log_dir):
    """Issue 3: each monitor at its defaults, all four, the doctor (which runs
    them all, with the loss as its metric: the benchmark models compile no
    accuracy), and the ratio every step; an identical plain model of its own
    shows the noise.

    Epochs validate on 5 batches here (for OverfittingMonitor), the baseline
    too; monitors write TensorBoard files to a temporary folder.
    """
    def all_four():
        return [
            kt.LossMonitor(log_dir, verbose=0),
            kt.OverfittingMonitor("loss", log_dir=log_dir, verbose=0),
            kt.UpdateRatioLogger(log_dir, verbose=0),
            kt.ActivationMonitor(x_probe, log_dir, verbose=0),
        ]

    return [
        harness.Variant("plain fit (own model, control)", sgd, own_model=True),
        harness.Variant("LossMonitor()", sgd,
                        lambda: [kt.LossMonitor(log_dir, verbose=0)]),
        harness.Variant(
            "OverfittingMonitor(\"loss\")", sgd,
            lambda: [kt.OverfittingMonitor("loss", log_dir=log_dir, verbose=0)]),
        harness.Variant("UpdateRatioLogger()", sgd,
                        lambda: [kt.UpdateRatioLogger(log_dir, verbose=0)]),
        harness.Variant(
            "ActivationMonitor(x[:256])", sgd,
            lambda: [kt.ActivationMonitor(x_probe, log_dir, verbose=0)]),
        harness.Variant("all four monitors", sgd, all_four),
        harness.Variant(
            "TrainingDoctor(x_probe=x[:256])", sgd,
            lambda: [kt.TrainingDoctor(log_dir, x_probe, metric="loss",
                                       verbose=0)]),
        harness.Variant(
            "TrainingDoctor(x_probe=x[:256], probe_overhead=None)", sgd,
            lambda: [kt.TrainingDoctor(log_dir, x_probe, metric="loss",
                                       probe_overhead=None, verbose=0)]),
        harness.Variant(
            "UpdateRatioLogger(every=1)", sgd,
            lambda: [kt.UpdateRatioLogger(log_dir, every=1, verbose=0)]),
    ]


class NaiveEMA(keras.callbacks.Callback):
    """The textbook callback: an EMA in NumPy after every batch (reference)."""

    def __init__(self, decay=0.999):
        super().__init__()
        self.decay = decay
        self.average = None

    def on_train_batch_end(self, batch, logs=None):
        weights = self.model.get_weights()
        if self.average is None:
            self.average = weights
        else:
            d = self.decay
            self.average = [d * a + (1 - d) * w
                            for a, w in zip(self.average, weights, strict=True)]


def averaging_suite(steps):
    """Issue 4: weight averages and snapshot ensembles, next to Keras' EMA."""
    keras_ema = _keras_ema_variants()
    return [
        harness.Variant("ExponentialMovingAverage()", sgd,
                        lambda: [kt.ExponentialMovingAverage()]),
        harness.Variant("ExponentialMovingAverage(every=1)", sgd,
                        lambda: [kt.ExponentialMovingAverage(every=1)]),
        # without the finiteness check, like Keras' use_ema
        harness.Variant(
            "ExponentialMovingAverage(every=1, skip_non_finite=False)", sgd,
            lambda: [kt.ExponentialMovingAverage(every=1,
                                                 skip_non_finite=False)]),
        harness.Variant("ExponentialMovingAverage(every=4)", sgd,
                        lambda: [kt.ExponentialMovingAverage(every=4)]),
        harness.Variant("StochasticWeightAveraging(0)", sgd,
                        lambda: [kt.StochasticWeightAveraging(0)]),
        harness.Variant("SnapshotEnsemble(cycles=5)", sgd,
                        lambda: [kt.SnapshotEnsemble(5)]),
        harness.Variant("CheckpointEnsemble()", sgd,
                        lambda: [kt.CheckpointEnsemble()]),
        harness.Variant("plain fit (own model, control)", sgd, own_model=True),
        *keras_ema,
        harness.Variant("naive NumPy EMA callback (reference)", sgd,
                        lambda: [NaiveEMA()]),
    ]


def _keras_ema_variants():
    """Keras' `SGD(use_ema=True)`, where a model can `fit` more than once.

    On JAX, Keras 3.15 fails every `fit` after the first of a model compiled
    with `use_ema=True` (`TypeError: 'NoneType' object is not callable`),
    and this harness fits each model once per round: there,
    `ema_backends.py` times it instead.
    """
    if keras.backend.backend() == "jax":
        print("note: keras SGD(use_ema=True) left out on JAX (Keras 3.15 "
              "cannot fit it twice); see benchmarks/ema_backends.py")
        return []
    return [
        harness.Variant(
            "keras SGD(use_ema=True) (own model, reference)",
            lambda: keras.optimizers.SGD(LR, momentum=0.9, nesterov=True,
                                         use_ema=True, ema_momentum=0.999),
            own_model=True),
    ]


def backup_suite(steps):
    """Issue 20: backups each epoch and every 100 updates, next to Keras'.

    Each variant's `fit` writes a backup at its start (not timed: before
    the first epoch begins) and one at the epoch's end; with `--steps 100`
    `save_freq=100` writes that one only. The folders are temporary.
    """
    folder = tempfile.mkdtemp()

    def ours(**kwargs):
        name = "-".join(f"{k}{v}" for k, v in kwargs.items()) or "epoch"
        return lambda: [kt.BackupAndRestore(os.path.join(folder, name), **kwargs)]

    return [
        harness.Variant("BackupAndRestore()", sgd, ours()),
        harness.Variant("BackupAndRestore(save_freq=100)", sgd,
                        ours(save_freq=100)),
        harness.Variant("BackupAndRestore(handle_sigterm=False)", sgd,
                        ours(handle_sigterm=False)),
        harness.Variant(
            "keras BackupAndRestore(save_freq=100) (reference)", sgd,
            lambda: [keras.callbacks.BackupAndRestore(
                os.path.join(folder, "keras"), save_freq=100)]),
    ]


SUITES = {"averaging": averaging_suite, "backup": backup_suite,
          "decay": decay_suite, "monitors": monitors_suite}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*harness.MODELS, "all"],
                        default="all")
    parser.add_argument("--suite", choices=sorted(SUITES) + ["all"],
                        default="all")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100,
                        help="steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs per timed fit (costs a callback pays "
                             "at a fit's last epoch weigh 1/EPOCHS)")
    parser.add_argument("--only", metavar="TEXT",
                        help="time only the variants whose name contains TEXT "
                             "(plain fit always runs)")
    parser.add_argument("--json", help="also write the raw timings here")
    args = parser.parse_args(argv)

    models = list(harness.MODELS) if args.model == "all" else [args.model]
    suites = sorted(SUITES) if args.suite == "all" else [args.suite]
    raw = {}
    print(f"{harness.header()}, "
          f"{args.rounds} rounds x "
          f"{f'{args.epochs} epochs x ' if args.epochs > 1 else ''}"
          f"{args.steps} steps, batch 128")
    log_dir = tempfile.mkdtemp(prefix="keras_trainopt_bench_")
    for model in models:
        input_shape = harness.MODELS[model][1]
        x_probe, _ = harness.synthetic_data(input_shape, 2, 128, seed=2)
        variants = [harness.Variant("plain fit", sgd)]
        for suite in suites:
            if suite == "monitors":
                variants += monitors_suite(args.steps, x_probe, log_dir)
            else:
                variants += SUITES[suite](args.steps)
        if args.only:
            variants = variants[:1] + [
                v for v in variants[1:] if args.only in v.name
            ]
        results = harness.measure(
            variants, model=model, rounds=args.rounds, steps=args.steps,
            validation_steps=5 if "monitors" in suites else 0,
            epochs=args.epochs,
        )
        raw[model] = results
        print()
        print(harness.markdown_table(model, harness.summarize(results)))
    shutil.rmtree(log_dir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
