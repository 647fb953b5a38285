"""The shared yardstick: step time with a callback over plain `model.fit`.

Variants that differ only in their callbacks train the *same* model and
optimizer, one `fit(epochs=1)` call after another: separate copies of a model
differ in speed by several percent on their own (memory placement), which
would drown a 2% effect. A variant with its own optimizer (e.g. a schedule
compiled into it) gets its own model, and the suites add an identical "plain
fit (own model)" control to show how large that copy-to-copy difference is.

Each round runs one epoch of every variant in a shuffled order, with an epoch
of plain `fit` before the first and after each variant (P V1 P V2 P ...), and
divides a variant's step time by the mean of the two plain epochs around it:
this machine's speed drifts by tens of percent over seconds, and only
neighbouring epochs share the same drift. Epochs are timed from the first
`on_epoch_begin` to the last `on_epoch_end` (the callbacks' epoch hooks count,
`fit`'s set-up does not). A warm-up epoch per variant, run first, pays for
tracing and is not timed. The figure reported is the median over rounds of
that ratio; min and max show the spread.

Epoch-to-epoch noise on a shared 2-core machine is about 10%, which blurs a
1-2% effect even in the median. So the harness also times the callbacks' own
hooks (every hook a callback overrides, wall time inside it) and reports that
per step as a share of the plain step time: a precise figure for the cost a
callback adds on the host, next to the noisier end-to-end ratio.
"""

import dataclasses
import os
import random
import statistics
import time

import keras
import numpy as np


@dataclasses.dataclass
class Variant:
    """One way of training: an optimizer factory and a callbacks factory.

    `callbacks` is called once, before the warm-up epoch; the same callback
    instances then run in every round, as in a long `fit`.
    """

    name: str
    optimizer: callable
    callbacks: callable = lambda: []
    own_model: bool = False


def mlp():
    """The benchmark MLP: 784-512-512-10, ReLU."""
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def mlp128():
    """The short-step yardstick: 784-128-128-10, ReLU (~2 ms a step here).

    A GPU runs the benchmark MLP's step in a millisecond or less; on this CPU
    this narrower one comes closest, so a fixed cost per step shows in it as
    it would there.
    """
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def cnn():
    """A small CNN on 28x28x1: two conv/pool blocks and a dense head."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


MODELS = {
    "mlp": (mlp, (784,)),
    "mlp128": (mlp128, (784,)),
    "cnn": (cnn, (28, 28, 1)),
}


def device_name():
    """The device Keras trains on: the accelerator's name, else the CPU's.

    Benchmark headers name it, so that a table says which card (or how many
    cores) gave its figures.
    """
    backend = keras.backend.backend()
    name = None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            name = f"{device.device_kind} ({device.platform})"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            name = f"{torch.cuda.get_device_name()} (cuda)"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            name = f"{details.get('device_name', gpus[0].name)} (cuda)"
    return name or f"CPU, {os.cpu_count()} cores"


def header():
    """`keras <version>, backend <name>, <device>`: a benchmark's first line."""
    return (f"keras {keras.__version__}, backend {keras.backend.backend()}, "
            f"{device_name()}")


def synthetic_data(input_shape, steps, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    n = steps * batch_size
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, 10, size=(n,))
    return x, y


HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_epoch_begin",
         "on_epoch_end", "on_train_begin", "on_train_end")


def _time_hooks(callback, spent):
    """Wraps the hooks `callback` overrides so that their time adds to `spent`."""
    for hook in HOOKS:
        method = getattr(callback, hook)
        if getattr(method, "_is_default", False):
            continue  # Keras skips default hooks; keep them recognisable

        def timed(*args, _method=method, **kwargs):
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(callback, hook, timed)
    return callback


class _Clock(keras.callbacks.Callback):
    """Two clocks bracket the callbacks under test: start first, stop last."""

    def __init__(self, times, edge):
        super().__init__()
        self.times = times
        self.edge = edge

    def on_epoch_begin(self, epoch, logs=None):
        if self.edge == "start":
            self.times.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        if self.edge == "stop":
            self.times.append(time.perf_counter())


def measure(variants, model="mlp", rounds=7, steps=100, batch_size=128,
            seed=0, validation_steps=0, epochs=1):
    """Times every variant; returns {name: {"ratios": [...], "ms": [...]}}.

    The first variant is the baseline (plain `fit`). With
    `validation_steps > 0` every variant, the baseline included, validates on
    that many batches after each epoch (monitors of the train/validation gap
    need it); the timed epoch then includes validation. Each timed `fit`
    runs `epochs` epochs of `steps` steps, timed from the first one's begin
    to the last one's end (the boundaries between them included): a cost
    that a callback pays once per `fit`, at its last epoch, weighs 1/epochs
    of it.
    """
    build, input_shape = MODELS[model]
    x, y = synthetic_data(input_shape, steps, batch_size, seed)
    fit_kwargs = {}
    if validation_steps:
        fit_kwargs["validation_data"] = synthetic_data(
            input_shape, validation_steps, batch_size, seed + 1
        )
    runs = {}
    shared = None
    for variant in variants:
        if variant.own_model or shared is None:
            keras.utils.set_random_seed(seed)
            net = build()
            net.compile(
                optimizer=variant.optimizer(),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True
                ),
            )
            if not variant.own_model:
                shared = net
        else:
            net = shared
        times, spent = [], [0.0]
        callbacks = [
            _Clock(times, "start"),
            *[_time_hooks(cb, spent) for cb in variant.callbacks()],
            _Clock(times, "stop"),
        ]
        net.fit(x, y, batch_size=batch_size, epochs=1, callbacks=callbacks,
                verbose=0, **fit_kwargs)  # warm-up: tracing, not timed
        runs[variant.name] = (net, callbacks, times, spent)

    def epoch_ms(name):
        net, callbacks, times, spent = runs[name]
        del times[:]
        spent[0] = 0.0
        net.fit(x, y, batch_size=batch_size, epochs=epochs,
                callbacks=callbacks, verbose=0, **fit_kwargs)
        start, stop = times[0], times[-1]
        hook_ms[name].append(1000.0 * spent[0] / (epochs * steps))
        return 1000.0 * (stop - start) / (epochs * steps)

    baseline = variants[0].name
    others = [v.name for v in variants[1:]]
    results = {name: {"ms": [], "ratios": []} for name in runs}
    hook_ms = {name: [] for name in runs}
    shuffle = random.Random(seed)
    for _ in range(rounds):
        shuffle.shuffle(others)
        before = epoch_ms(baseline)
        results[baseline]["ms"].append(before)
        results[baseline]["ratios"].append(1.0)
        for name in others:
            ms = epoch_ms(name)
            after = epoch_ms(baseline)
            results[name]["ms"].append(ms)
            results[name]["ratios"].append(ms / ((before + after) / 2))
            before = after
    plain = statistics.median(results[baseline]["ms"])
    for name in runs:
        results[name]["hook_ms"] = hook_ms[name]
        results[name]["hook_share"] = statistics.median(hook_ms[name]) / plain
    return results


def median_interval(ratios, resamples=4000, seed=0):
    """A 95% bootstrap interval of the median of `ratios` (percentiles of
    the medians of `resamples` resamples with replacement)."""
    ratios = np.asarray(ratios, dtype="float64")
    picks = np.random.default_rng(seed).integers(
        0, len(ratios), (resamples, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def summarize(results):
    """Rows of (name, median ratio, min, max, 95% interval of the median,
    ms/step, hook share of a step)."""
    return [
        (
            name,
            statistics.median(r["ratios"]),
            min(r["ratios"]),
            max(r["ratios"]),
            median_interval(r["ratios"]),
            statistics.median(r["ms"]),
            r["hook_share"],
        )
        for name, r in results.items()
    ]


def markdown_table(model, rows):
    lines = [
        "| model | variant | step time / plain fit (median) | 95% interval "
        "| min | max | ms/step | hook time / plain step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, median, low, high, (lo, hi), ms, share in rows:
        lines.append(
            f"| {model} | {name} | {median:.3f}x | [{lo:.2f}, {hi:.2f}] "
            f"| {low:.3f} | {high:.3f} | {ms:.2f} | {share:.2%} |"
        )
    return "\n".join(lines)
