"""Where `TrainingDoctor`'s time goes: each monitor's hooks, per epoch.

    python benchmarks/epoch_costs.py --model mlp128
    KERAS_BACKEND=jax python benchmarks/epoch_costs.py --model mlp128 --profile

Trains the benchmark model (`harness.MODELS`) with the doctor at its
defaults (probe `x[:256]`, the loss as its metric, TensorBoard files in a
temporary folder), one `fit` of one 100-step epoch with 5 validation
batches after another, as `overhead.py` does, and prints the wall time
spent in each monitor's hooks per epoch, largest first, in two tables: the
hooks that run within an epoch (which `overhead.py` times), and those of
`on_train_begin` and `on_train_end`, which run once per `fit`, outside the
timed epochs. On JAX a hook that reads a device value also waits for
the steps in flight there, which a plain `fit` waits for at the epoch's end
anyway: that part is not a cost. `--profile` adds `cProfile`'s view of the
library's and TensorBoard's functions.
"""

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import keras  # noqa: E402

import keras_trainopt as kt  # noqa: E402

HOOKS = harness.HOOKS + ("on_test_begin", "on_test_end")


def _timed(monitor, name, spent):
    """Wraps `monitor`'s hooks so that their time adds to `spent[(name, hook)]`."""
    for hook in HOOKS:
        method = getattr(monitor, hook)

        def timed(*args, _method=method, _key=(name, hook), **kwargs):
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[_key] += time.perf_counter() - start

        setattr(monitor, hook, timed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(harness.MODELS),
                        default="mlp128")
    parser.add_argument("--epochs", type=int, default=8,
                        help="timed one-epoch fits, after one untimed")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    build, input_shape = harness.MODELS[args.model]
    x, y = harness.synthetic_data(input_shape, 100, 128)
    validation = harness.synthetic_data(input_shape, 5, 128, seed=1)
    x_probe, _ = harness.synthetic_data(input_shape, 2, 128, seed=2)
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        kt.nesterov_sgd(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    log_dir = tempfile.mkdtemp(prefix="keras_trainopt_costs_")
    doctor = kt.TrainingDoctor(log_dir, x_probe, metric="loss", verbose=0)
    spent = collections.defaultdict(float)
    for name, monitor in doctor.monitors.items():
        _timed(monitor, name, spent)

    def fit():
        model.fit(x, y, batch_size=128, epochs=1, verbose=0,
                  validation_data=validation, callbacks=[doctor])

    fit()  # tracing, not timed
    spent.clear()
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    start = time.perf_counter()
    for _ in range(args.epochs):
        fit()
    elapsed = time.perf_counter() - start
    if profile:
        profile.disable()
    shutil.rmtree(log_dir, ignore_errors=True)

    print(f"{harness.header()}, "
          f"{args.model}: {1000 * elapsed / args.epochs:.1f} ms per fit of "
          "one 100-step epoch with the doctor\n")
    per_fit = ("on_train_begin", "on_train_end")
    for title, hooks in (
        ("within the epoch (what `overhead.py` times)",
         [key for key in spent if key[1] not in per_fit]),
        ("once per `fit` (outside the timed epochs)",
         [key for key in spent if key[1] in per_fit]),
    ):
        rows = sorted((key for key in hooks  # under 5 us: not shown
                       if spent[key] / args.epochs >= 5e-6),
                      key=lambda key: -spent[key])
        total = 1000 * sum(spent[key] for key in hooks) / args.epochs
        print(f"Hooks {title}: {total:.2f} ms per epoch\n")
        print("| monitor | hook | ms per epoch |")
        print("|---|---|---:|")
        for name, hook in rows:
            print(f"| {name} | {hook} | "
                  f"{1000 * spent[name, hook] / args.epochs:.2f} |")
        print()
    if profile:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats("keras_trainopt|tensorboard", 30)


if __name__ == "__main__":
    main()
