"""Our EMA against Keras' `use_ema`, on whichever backend KERAS_BACKEND picks.

    KERAS_BACKEND=jax python benchmarks/ema_backends.py --repeats 7
    KERAS_BACKEND=torch python benchmarks/ema_backends.py --model mlp128

Issue 8's yardstick: `ExponentialMovingAverage(every=1)` should cost no more
than the optimizer's own `use_ema=True` on each backend. `overhead.py`
times one-epoch `fit` calls on one model, which Keras 3.15's `use_ema`
cannot do on JAX (every `fit` after the first raises `TypeError: 'NoneType'
object is not callable`: the averages are purged from their variables and
never synced back). So here every variant trains a fresh model in one
`fit` of `1 + epochs` epochs; the first epoch (tracing) is dropped and the
median of the others is its step time. Variants run in a shuffled order in
each repeat, and each one's ratio is taken to the plain `fit` of the same
repeat; the table gives the median over repeats.
"""

import argparse
import os
import random
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import keras  # noqa: E402

import keras_trainopt as kt  # noqa: E402

LR = 0.01


class _EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ms = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.ms.append(1000.0 * (time.perf_counter() - self._start))


VARIANTS = {
    "plain fit": (lambda: kt.nesterov_sgd(LR), lambda: []),
    "ExponentialMovingAverage(every=1)": (
        lambda: kt.nesterov_sgd(LR),
        lambda: [kt.ExponentialMovingAverage(0.999, every=1)],
    ),
    "ExponentialMovingAverage(every=1, skip_non_finite=False)": (
        lambda: kt.nesterov_sgd(LR),
        lambda: [kt.ExponentialMovingAverage(0.999, every=1,
                                             skip_non_finite=False)],
    ),
    "ExponentialMovingAverage() (every=8)": (
        lambda: kt.nesterov_sgd(LR),
        lambda: [kt.ExponentialMovingAverage(0.999)],
    ),
    "keras SGD(use_ema=True)": (
        lambda: keras.optimizers.SGD(LR, momentum=0.9, nesterov=True,
                                     use_ema=True, ema_momentum=0.999),
        lambda: [],
    ),
}


def step_ms(name, x, y, epochs, steps, build):
    optimizer, callbacks = VARIANTS[name]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    clock = _EpochClock()
    model.fit(x, y, batch_size=128, epochs=1 + epochs, verbose=0,
              callbacks=[*callbacks(), clock])
    return statistics.median(clock.ms[1:]) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=4,
                        help="timed epochs per fit (after one untimed)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--model", choices=["mlp", "mlp128"], default="mlp",
                        help="mlp: 784-512-512-10; mlp128: 784-128-128-10, "
                        "the short-step yardstick")
    args = parser.parse_args(argv)
    build = harness.MODELS[args.model][0]
    x, y = harness.synthetic_data((784,), args.steps, 128)
    ratios = {name: [] for name in VARIANTS}
    times = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    shuffle = random.Random(0)
    for _ in range(args.repeats):
        shuffle.shuffle(order)
        measured = {
            n: step_ms(n, x, y, args.epochs, args.steps, build) for n in order
        }
        for name, ms in measured.items():
            times[name].append(ms)
            ratios[name].append(ms / measured["plain fit"])
    print(f"{harness.header()}, "
          f"{args.repeats} repeats x {args.epochs} epochs x {args.steps} "
          f"steps, batch 128, {args.model}: {build.__doc__.splitlines()[0]}")
    print()
    print("| variant | step time / plain fit (median) | min | max | ms/step |")
    print("|---|---:|---:|---:|---:|")
    for name in VARIANTS:
        r = ratios[name]
        print(f"| {name} | {statistics.median(r):.3f}x | {min(r):.3f} | "
              f"{max(r):.3f} | {statistics.median(times[name]):.2f} |")


if __name__ == "__main__":
    main()
