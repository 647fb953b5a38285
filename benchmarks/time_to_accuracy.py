"""Time to accuracy: common Keras defaults against the library's recipe.

    python benchmarks/time_to_accuracy.py --seeds 5 --epochs 40 \\
        --problems digits,spirals \\
        --json benchmarks/results/time_to_accuracy.json \\
        --plot docs/time_to_accuracy.png
    python benchmarks/time_to_accuracy.py --replot \\
        benchmarks/results/time_to_accuracy.json --plot docs/time_to_accuracy.png
    python benchmarks/time_to_accuracy.py --quick        # a smoke run, ~30 s

A fixed network per problem is trained for a fixed budget of epochs, with the
same batch size and, for one seed, the same initial weights and batch order
in every variant. After each epoch (after its validation) a callback records
the wall time since the variant started and the validation accuracy, so each
run gives a curve of validation accuracy against cumulative seconds. From it:
the epochs and seconds until the validation accuracy first reaches the
problem's target, the final and the best validation accuracy, and at the end
the test accuracy of the weights the run ends with. Medians over seeds;
a variant that does not reach the target in every seed is reported with the
median over the seeds that did, and "(k/n)"; one that never does as "not
reached (0/n)".

Problems (the data is fixed; the seed changes the initial weights, the batch
order and the range test's batch order):

- digits: scikit-learn's bundled 8x8 digits, the demo's 60/20/20 split
  (`keras_trainopt.demo.load_digits_split(0)`: 1078 train, 359 validation,
  360 test images) and the demo's network (`build_model()`, 64-64-10 MLP),
  batch 32 (34 steps per epoch). Target 96% validation accuracy (345 of
  359 images): in the pilot run (seed 0) Adam reached it at epoch 21 of 40
  and the recipe at epoch 5, and every sensible variant ends at 97-98.5%, so
  the target measures speed, not luck on the last few images (97% was too
  close to where Adam ends).
- spirals: 5 interleaved spiral arms in the plane, 2 turns, angular noise
  0.35 rad (cs231n's spiral data, made harder), 2000 points per arm, split
  60/20/20 (6000 train), standardised; a 2-64-64-5 ReLU MLP, batch 64 (94
  steps per epoch). Nothing here is linearly separable: the network must
  learn the spirals in its hidden layers, and training starts on a plateau
  (accuracy at chance, 20-30%) that a small rate never leaves. The best
  accuracy the noise allows is about 92.5% (a 25-nearest-neighbour
  classifier trained on 180,000 fresh points reaches 92.4%). Target 85%:
  about 7 points below that, a level Adam reached at epoch 25-30 of 40 in
  the pilot runs.

Variants, run one after another for each seed (the order rotates with the
seed, after one untimed warm-up fit per problem that pays the process's
one-off TensorFlow start-up):

- `Adam 1e-3`: Keras' default Adam, constant rate.
- `SGD 0.01`: Keras' default SGD (no momentum), constant rate.
- `range-test rate, constant`: an ablation, the recipe's optimizer and rate
  without decay or averaging (`nesterov_sgd(lr, momentum=0.9)`).
- `recipe`: the library's recipe, one rule for every problem and seed, fixed
  before the benchmark ran (from range tests on the training data and one
  pilot seed's validation curves; the test split was not looked at):
    1. `find_learning_rate` on the training data with the optimizer the
       recipe trains with, `nesterov_sgd(momentum=0.9)`, at the training
       batch size: 300 steps from 1e-6 to 10, rule `"minimum"` (a tenth of
       the rate with the lowest smoothed loss). 300 steps, not the default
       100: on the spirals the loss hardly moves in a 100-step sweep (the
       plateau: the smoothed loss falls by under 2%), the curve is flat
       within noise, and the rules pick noise: the default rule
       (`"steepest"`) gave 5e-6 for one seed and `"minimum"` 2e-7 for
       another (both below 5e-5 with the default lr_min=1e-7 too). With 300
       steps (about 0.5-1 s here) every rule gave 0.05-0.2 on the spirals
       for five seeds (range tests see training data only). Of the rules,
       "minimum" varied least across seeds (digits 0.046-0.075, spirals
       0.08-0.16); "steepest" was a little larger and noisier (spirals
       0.05-0.2), "valley" 5-10x smaller on the digits (0.007-0.013).
    2. `nesterov_sgd(lr, momentum=0.9)`.
    3. `StepDecay(factor=0.5, every=epochs // 4)`: halve the rate at each
       quarter of the budget (cs231n's "step decay", as in the demo), so the
       last quarter trains at lr / 8.
    4. `ExponentialMovingAverage(decay=1 - 1 / steps_per_epoch,
       validate_with_average=True)` (default `every=8`, warm-up on): an
       average over about the last epoch (0.971 on the digits, 0.989 on the
       spirals), long enough to smooth the mini-batch noise and short enough
       to follow the fast early progress. The validation accuracy of this
       variant is that of the averaged weights, which is what one would
       ship; its test accuracy too (the model holds the average at the end).
  The recipe's clock (and the ablation's) starts before the range test: its
  seconds to target include the range test, which is also reported alone.

The machine is shared and timings are noisy (10-20% between epochs); the
epochs-to-target figures do not depend on it.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from keras_trainopt.demo import build_model  # noqa: E402
from keras_trainopt.demo import load_digits_split  # noqa: E402

VARIANTS = [
    "Adam 1e-3",
    "SGD 0.01",
    "range-test rate, constant",
    "recipe",
]
LABELS = {
    "Adam 1e-3": "Adam 1e-3 (Keras default)",
    "SGD 0.01": "SGD 0.01 (Keras default)",
    "range-test rate, constant": "Nesterov SGD at the range-test rate, "
                                 "constant (ablation)",
    "recipe": "recipe: range test + Nesterov + StepDecay + EMA",
}
COLORS = {
    "Adam 1e-3": "#4c72b0",
    "SGD 0.01": "#8c8c8c",
    "range-test rate, constant": "#55a868",
    "recipe": "#dd8452",
}
RANGE_TEST = dict(lr_min=1e-6, lr_max=10.0, steps=300, rule="minimum")


# -- data and networks -------------------------------------------------------


def make_spirals(points_per_arm=2000, arms=5, turns=2.0, noise=0.35, seed=0):
    """`arms` interleaved noisy spirals, split 60/20/20 and standardised.

    Arm k at radius r in (0.22, 1] has angle
    `2 pi (turns * r + k / arms) + N(0, noise)`; radii are drawn with a
    uniform density over the disc's area.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(arms):
        r = np.sqrt(rng.uniform(0.05, 1.0, points_per_arm))
        angle = 2 * np.pi * (turns * r + k / arms) + rng.normal(
            0.0, noise, points_per_arm)
        xs.append(np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1))
        ys.append(np.full(points_per_arm, k))
    x = np.concatenate(xs).astype("float32")
    y = np.concatenate(ys)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
    scaler = StandardScaler().fit(x_train)

    def scale(a):
        return scaler.transform(a).astype("float32")

    return ((scale(x_train), y_train), (scale(x_val), y_val),
            (scale(x_test), y_test))


def spirals_model(arms=5):
    return keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(arms, activation="softmax"),
    ], name="spirals_mlp")


def problems(quick):
    """name -> description, data, model factory, batch size, target."""
    return {
        "digits": dict(
            description="digits (64-64-10 MLP, batch 32)",
            data=lambda: load_digits_split(seed=0),
            model=lambda: build_model(64),
            batch_size=32,
            target=0.96,
            plot_ylim=(0.8, 1.0),
        ),
        "spirals": dict(
            description="5 spirals (2-64-64-5 MLP, batch 64)",
            data=lambda: make_spirals(400 if quick else 2000),
            model=spirals_model,
            batch_size=64,
            target=0.85,
            plot_ylim=(0.15, 1.0),
        ),
    }


# -- one run -----------------------------------------------------------------


class EpochClock(keras.callbacks.Callback):
    """Seconds since `start` and validation accuracy at every epoch end.

    Put it last in the callbacks list, so the epoch's validation and the
    other callbacks' epoch-end work (the EMA swapping the raw weights back)
    are inside the measured time.
    """

    def __init__(self, start):
        super().__init__()
        self.start = start
        self.seconds = []
        self.val_accuracy = []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.val_accuracy.append(float(logs["val_accuracy"]))


def run_variant(name, problem, data, initial_weights, seed, epochs,
                range_test):
    (x, y), (x_val, y_val), (x_test, y_test) = data
    batch_size = problem["batch_size"]
    steps_per_epoch = math.ceil(len(x) / batch_size)
    keras.utils.set_random_seed(seed)
    model = problem["model"]()
    model.set_weights(initial_weights)
    if name == "Adam 1e-3":
        optimizer = keras.optimizers.Adam(1e-3)
    elif name == "SGD 0.01":
        optimizer = keras.optimizers.SGD(0.01)
    else:
        optimizer = kt.nesterov_sgd(0.01, momentum=0.9)  # rate set below
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    result = {}
    callbacks = []
    start = time.perf_counter()
    if name in ("range-test rate, constant", "recipe"):
        found = kt.find_learning_rate(model, x, y, batch_size=batch_size,
                                      seed=seed, **range_test)
        result["range_test_seconds"] = time.perf_counter() - start
        result["learning_rate"] = found.suggestion
        result["suggestions"] = found.suggestions
        model.optimizer.learning_rate = found.suggestion
    if name == "recipe":
        ema_decay = 1.0 - 1.0 / steps_per_epoch
        callbacks = [
            kt.StepDecay(factor=0.5, every=max(1, epochs // 4)),
            kt.ExponentialMovingAverage(decay=ema_decay,
                                        validate_with_average=True),
        ]
        result["ema_decay"] = ema_decay
    clock = EpochClock(start)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs,
              batch_size=batch_size, callbacks=callbacks + [clock], verbose=0)
    result["seconds"] = clock.seconds
    result["val_accuracy"] = clock.val_accuracy
    # the recipe's model holds the EMA now (apply_at_end=True)
    result["test_accuracy"] = float(model.evaluate(
        x_test, y_test, batch_size=512, verbose=0)[1])
    return result


def warm_up(problem, data):
    """One untimed short fit: the process's first fit pays TF's start-up."""
    (x, y), (x_val, y_val), _ = data
    keras.utils.set_random_seed(12345)
    model = problem["model"]()
    model.compile(optimizer=kt.nesterov_sgd(0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    kt.find_learning_rate(model, x, y, batch_size=problem["batch_size"],
                          steps=10)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=1,
              batch_size=problem["batch_size"], verbose=0)


# -- summaries ---------------------------------------------------------------


def reached(run, target):
    """(epochs, seconds) of the first epoch at or above target, or None."""
    for epoch, (seconds, accuracy) in enumerate(
            zip(run["seconds"], run["val_accuracy"], strict=True)):
        if accuracy >= target:
            return epoch + 1, seconds
    return None


def summarize(runs, target):
    """Medians over the seeds of one variant on one problem."""
    hits = [h for h in (reached(r, target) for r in runs) if h is not None]
    out = {
        "reached": len(hits),
        "seeds": len(runs),
        "epochs_to_target": statistics.median(h[0] for h in hits)
        if hits else None,
        "seconds_to_target": statistics.median(h[1] for h in hits)
        if hits else None,
        "final_val_accuracy": statistics.median(
            r["val_accuracy"][-1] for r in runs),
        "best_val_accuracy": statistics.median(
            max(r["val_accuracy"]) for r in runs),
        "test_accuracy": statistics.median(r["test_accuracy"] for r in runs),
        "total_seconds": statistics.median(r["seconds"][-1] for r in runs),
    }
    if "range_test_seconds" in runs[0]:
        out["range_test_seconds"] = statistics.median(
            r["range_test_seconds"] for r in runs)
        out["learning_rate"] = statistics.median(
            r["learning_rate"] for r in runs)
        out["learning_rates"] = [r["learning_rate"] for r in runs]
    return out


def _to_target(s, key, fmt):
    if s["reached"] == 0:
        return f"not reached (0/{s['seeds']})"
    text = fmt.format(s[key])
    if s["reached"] < s["seeds"]:
        text += f" ({s['reached']}/{s['seeds']} reached)"
    return text


def table(saved):
    lines = [
        "| problem (target) | variant | epochs to target | seconds to target "
        "| of which range test | final val acc | best val acc "
        "| test acc | seconds, all epochs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for problem, entry in saved["problems"].items():
        for name in VARIANTS:
            if name not in entry["runs"]:
                continue
            s = summarize(entry["runs"][name], entry["target"])
            label = name
            if "learning_rate" in s:
                label += f" (lr {s['learning_rate']:.2g})"
            range_test = (f"{s['range_test_seconds']:.2f}"
                          if "range_test_seconds" in s else "-")
            lines.append(
                f"| {problem} ({100 * entry['target']:.0f}%) | {label} "
                f"| {_to_target(s, 'epochs_to_target', '{:g}')} "
                f"| {_to_target(s, 'seconds_to_target', '{:.1f}')} "
                f"| {range_test} "
                f"| {100 * s['final_val_accuracy']:.2f}% "
                f"| {100 * s['best_val_accuracy']:.2f}% "
                f"| {100 * s['test_accuracy']:.2f}% "
                f"| {s['total_seconds']:.1f} |"
            )
    return "\n".join(lines)


def plot(saved, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(saved["problems"])
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 6.2),
                             squeeze=False)
    for ax, problem in zip(axes[0], names, strict=True):
        entry = saved["problems"][problem]
        target = entry["target"]
        for name in VARIANTS:
            runs = entry["runs"].get(name)
            if not runs:
                continue
            color = COLORS[name]
            for r in runs:
                ax.plot(r["seconds"], r["val_accuracy"], color=color,
                        lw=0.6, alpha=0.35)
            # median curve: median time and median accuracy at each epoch
            times = np.median([r["seconds"] for r in runs], axis=0)
            accuracy = np.median([r["val_accuracy"] for r in runs], axis=0)
            s = summarize(runs, target)
            label = LABELS[name]
            if s["reached"]:
                label += (f": {s['seconds_to_target']:.1f} s to target"
                          + (f" ({s['reached']}/{s['seeds']})"
                             if s["reached"] < s["seeds"] else ""))
            else:
                label += ": target not reached"
            ax.plot(times, accuracy, color=color, lw=2.2, label=label)
            if name == "recipe":
                rt = s["range_test_seconds"]
                ax.axvspan(0, rt, color=color, alpha=0.12, lw=0)
                ax.text(rt, 0.02, " range test", color=color,
                        transform=ax.get_xaxis_transform(), fontsize=8,
                        va="bottom", ha="left")
        ax.axhline(target, color="black", ls="--", lw=1)
        ax.text(0.99, target, f"target {100 * target:.0f}%",
                transform=ax.get_yaxis_transform(), ha="right",
                va="bottom", fontsize=9)
        ax.set_ylim(*entry.get("plot_ylim", (0.0, 1.0)))
        ax.set_xlim(left=0)
        ax.set_xlabel("wall time since the start of training (s), "
                      "range test included")
        ax.set_ylabel("validation accuracy")
        ax.set_title(f"{entry['description']}, {entry['epochs']} epochs\n"
                     f"median of {len(entry['runs']['recipe'])} seeds "
                     "(thick), each seed (thin)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  fontsize=8.5, frameon=False)
    fig.suptitle("Time to accuracy: Keras defaults vs. the keras_trainopt "
                 "recipe (recipe validated on its EMA weights)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- main --------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--problems", default="digits,spirals",
                        help="comma-separated: digits, spirals (alias: "
                             "synthetic)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 seed, 4 epochs, 400 points per "
                             "spiral arm, a 100-step range test")
    parser.add_argument("--plot", help="write the figure here (PNG)")
    parser.add_argument("--json", help="write the per-epoch curves here")
    parser.add_argument("--replot", metavar="JSON",
                        help="only redraw the table and figure from a --json "
                             "file of an earlier run")
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        print(table(saved))
        if args.plot:
            plot(saved, args.plot)
        return

    if args.quick:
        args.seeds, args.epochs = 1, 4
    range_test = dict(RANGE_TEST, steps=100 if args.quick else 300)
    available = problems(args.quick)
    wanted = [("spirals" if p.strip() == "synthetic" else p.strip())
              for p in args.problems.split(",") if p.strip()]
    for p in wanted:
        if p not in available:
            parser.error(f"unknown problem {p!r}; choose from "
                         f"{', '.join(available)}")
    began = time.perf_counter()
    saved = {
        "args": vars(args),
        "range_test": range_test,
        "environment": {
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "problems": {},
    }
    for p in wanted:
        problem = available[p]
        data = problem["data"]()
        warm_up(problem, data)
        entry = saved["problems"][p] = {
            "description": problem["description"],
            "target": problem["target"],
            "epochs": args.epochs,
            "batch_size": problem["batch_size"],
            "plot_ylim": problem["plot_ylim"],
            "train_size": len(data[0][1]),
            "runs": {name: [] for name in VARIANTS},
        }
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            initial_weights = problem["model"]().get_weights()
            order = VARIANTS[seed % len(VARIANTS):] + VARIANTS[
                :seed % len(VARIANTS)]
            for name in order:
                run = run_variant(name, problem, data, initial_weights, seed,
                                  args.epochs, range_test)
                run["seed"] = seed
                entry["runs"][name].append(run)
                hit = reached(run, problem["target"])
                print(f"{p} seed {seed} {name:26s} "
                      + (f"target at epoch {hit[0]:2d}, {hit[1]:5.1f} s"
                         if hit else "target not reached       ")
                      + f"; final val {run['val_accuracy'][-1]:.4f} "
                      f"in {run['seconds'][-1]:.1f} s"
                      + (f"; lr {run['learning_rate']:.3g}"
                         if "learning_rate" in run else ""), flush=True)
    saved["runtime_seconds"] = time.perf_counter() - began
    print(f"\nkeras {keras.__version__}, backend {keras.backend.backend()}, "
          f"{os.cpu_count()} CPUs; {args.seeds} seeds, {args.epochs} epochs; "
          f"benchmark runtime {saved['runtime_seconds'] / 60:.1f} min\n")
    print(table(saved))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(saved, f, indent=1)
    if args.plot:
        plot(saved, args.plot)


if __name__ == "__main__":
    main()
