"""What each array a callback adds to JAX's train state costs a step.

    KERAS_BACKEND=jax python benchmarks/state_arrays.py --rounds 40 --steps 300

On JAX the monitors keep what the step measures in variables attached to
the optimizer while `fit` runs (`apply_hooks.ScratchStateOwner`), and every
one of them is one more array passed into and returned by each call of the
jitted train step, whether or not the step writes it. Here a callback
attaches `n` small int32 variables that nothing reads or writes, and the
harness times the fit against plain `fit` (see harness.py): the cost per
array is what is left. `LossMonitor` keeps its buffer in three arrays and
`UpdateRatioLogger` in two. On the other backends the variables stay out of
the step's arguments, and the figure is plain `fit`'s.
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import keras  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from keras_trainopt._internal import backend  # noqa: E402
from keras_trainopt._internal import optimizers  # noqa: E402


class StateArrays(keras.callbacks.Callback):
    """Attaches `n` idle int32 variables to the optimizer during `fit`."""

    def __init__(self, n, size=27):
        super().__init__()
        self.n = n
        self.size = size
        self.variables = None

    def on_train_begin(self, logs=None):
        if self.variables is None:
            self.variables = [
                optimizers.add_state_variable(
                    self.model, shape=(self.size,), dtype="int32",
                    name=f"idle_{i}", backed_up=False)
                for i in range(self.n)
            ]
        if backend.is_jax():
            optimizers.attach_state_variables(
                self.model.optimizer, self.variables)

    def on_train_end(self, logs=None):
        if backend.is_jax():
            optimizers.detach_state_variables(
                self.model.optimizer, self.variables)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mlp128", choices=["mlp", "mlp128"])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--arrays", type=int, nargs="+", default=[3, 7, 14, 20])
    args = parser.parse_args(argv)
    sgd = lambda: kt.nesterov_sgd(0.01)  # noqa: E731
    variants = [harness.Variant("plain fit", sgd)] + [
        harness.Variant(f"{n} idle arrays", sgd,
                        (lambda n=n: [StateArrays(n)]))
        for n in args.arrays
    ]
    results = harness.measure(variants, model=args.model, rounds=args.rounds,
                              steps=args.steps)
    plain_ms = statistics.median(results["plain fit"]["ms"])
    print(harness.header())
    print(f"plain fit: {plain_ms:.3f} ms/step ({args.model}, "
          f"{args.rounds} rounds x {args.steps} steps)\n")
    print("| arrays | step time / plain fit | 95% interval | us per array |")
    print("|---:|---:|---:|---:|")
    for n in args.arrays:
        ratios = results[f"{n} idle arrays"]["ratios"]
        ratio = statistics.median(ratios)
        low, high = harness.median_interval(ratios)
        per_array = 1000 * plain_ms * (ratio - 1) / n
        print(f"| {n} | {ratio:.3f}x | [{low:.2f}, {high:.2f}] | "
              f"{per_array:.1f} |")


if __name__ == "__main__":
    main()
