"""Which range-test rule to default to: train at each rule's suggestion.

    python benchmarks/range_test_rules.py --seeds 3 --epochs 15 \\
        --json benchmarks/results/range_test_rules.json \\
        --markdown docs/range_test_rules.md
    python benchmarks/range_test_rules.py --quick     # a smoke run

For each problem and seed: a fresh network (the seed sets its initial
weights, the batch order and the range test's batch order) compiled with
`nesterov_sgd(0.01, momentum=0.9)`; one `find_learning_rate` with the
library's defaults (100 steps from 1e-7 to 10, batch = the training batch),
which computes every rule's suggestion from the same curve; then, for each
rule, the same initial weights trained at that rule's suggestion, constant
rate, for a fixed budget of epochs (15, as in issue 22's report), validating
after every epoch. Recorded per run: the suggested rate, the final and best
validation accuracy, and the epochs and seconds until the validation accuracy
first reaches the problem's target (fixed before the runs). Medians over the
seeds; a rule that reaches the target in only k of n seeds shows "(k/n)".

Problems:
- digits: scikit-learn's 8x8 digits, the demo's 60/20/20 split and 64-64-10
  MLP, batch 32; target 96% (as in `time_to_accuracy.py`).
- spirals: 5 noisy spiral arms (`time_to_accuracy.make_spirals`, 1000 points
  per arm), 2-64-64-5 MLP, batch 64; target 80%.
- shapes: generated 16x16 grey images of 4 shapes (horizontal bar, vertical
  bar, diagonal, square outline) at random places and sizes with Gaussian
  noise (sd 0.35), 2400 train / 800 validation, a small CNN (conv 8 - pool -
  conv 16 - global average pool - dense 4), batch 32; target 95%.

The clock starts at the first training step (the range test itself is the
same for all rules and is not counted). The machine is shared: seconds are
noisy, epochs are not.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from time_to_accuracy import make_spirals  # noqa: E402
from time_to_accuracy import spirals_model  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from keras_trainopt.demo import build_model  # noqa: E402
from keras_trainopt.demo import load_digits_split  # noqa: E402

RULES = ("steepest", "minimum", "valley")


def make_shapes(n=3200, size=16, noise=0.35, seed=0):
    """Noisy 16x16 images of 4 shapes; 75/25 train/validation split."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 1), "float32")
    y = rng.integers(0, 4, n)
    for i, label in enumerate(y):
        length = int(rng.integers(6, 12))
        r, c = (int(v) for v in rng.integers(0, size - length, 2))
        img = x[i, :, :, 0]
        if label == 0:
            img[r, c:c + length] = 1.0
        elif label == 1:
            img[r:r + length, c] = 1.0
        elif label == 2:
            idx = np.arange(length)
            img[r + idx, c + idx] = 1.0
        else:
            img[r, c:c + length] = img[r + length - 1, c:c + length] = 1.0
            img[r:r + length, c] = img[r:r + length, c + length - 1] = 1.0
    x += rng.normal(0.0, noise, x.shape).astype("float32")
    split = n * 3 // 4
    return (x[:split], y[:split]), (x[split:], y[split:])


def shapes_model():
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ], name="shapes_cnn")


def problems(quick):
    def digits():
        (x, y), (xv, yv), _ = load_digits_split(seed=0)
        return (x, y), (xv, yv)

    def spirals():
        (x, y), (xv, yv), _ = make_spirals(300 if quick else 1000)
        return (x, y), (xv, yv)

    return {
        "digits": dict(data=digits, model=lambda: build_model(64),
                       batch_size=32, target=0.96,
                       description="digits, 64-64-10 MLP, batch 32"),
        "spirals": dict(data=spirals, model=spirals_model, batch_size=64,
                        target=0.80,
                        description="5 spirals, 2-64-64-5 MLP, batch 64"),
        "shapes": dict(data=lambda: make_shapes(800 if quick else 3200),
                       model=shapes_model, batch_size=32, target=0.95,
                       description="16x16 shapes, small CNN, batch 32"),
    }


class Curve(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds, self.val_accuracy = [], []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.val_accuracy.append(float(logs["val_accuracy"]))


def run_seed(problem, data, seed, epochs):
    (x, y), (xv, yv) = data
    batch_size = problem["batch_size"]
    keras.utils.set_random_seed(seed)
    model = problem["model"]()
    model.compile(kt.nesterov_sgd(0.01, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    initial = model.get_weights()
    found = kt.find_learning_rate(model, x, y, batch_size=batch_size,
                                  seed=seed)
    runs = {}
    for rule in RULES:
        rate = found.suggestions[rule]
        keras.utils.set_random_seed(seed)
        model = problem["model"]()
        model.set_weights(initial)
        model.compile(kt.nesterov_sgd(rate, momentum=0.9),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        curve = Curve()
        model.fit(x, y, validation_data=(xv, yv), epochs=epochs,
                  batch_size=batch_size, callbacks=[curve], verbose=0)
        runs[rule] = dict(learning_rate=rate, seconds=curve.seconds,
                          val_accuracy=curve.val_accuracy)
    return runs


def reached(run, target):
    for epoch, (s, acc) in enumerate(zip(run["seconds"],
                                         run["val_accuracy"], strict=True)):
        if acc >= target:
            return epoch + 1, s
    return None


def summarize(runs, target):
    hits = [h for h in (reached(r, target) for r in runs) if h]
    final = [r["val_accuracy"][-1] for r in runs]
    return {
        "learning_rate": statistics.median(r["learning_rate"] for r in runs),
        "learning_rate_range": [min(r["learning_rate"] for r in runs),
                                max(r["learning_rate"] for r in runs)],
        "final_val_accuracy": statistics.median(final),
        "final_val_accuracy_range": [min(final), max(final)],
        "best_val_accuracy": statistics.median(max(r["val_accuracy"])
                                               for r in runs),
        "reached": len(hits), "seeds": len(runs),
        "epochs_to_target": statistics.median(h[0] for h in hits)
        if hits else None,
        "seconds_to_target": statistics.median(h[1] for h in hits)
        if hits else None,
    }


def markdown(saved):
    lines = [
        "| problem | rule | suggested rate (median; range) | final val. "
        "accuracy (median; range) | epochs to target | seconds to target |",
        "|---|---|---|---|---:|---:|",
    ]
    for name, entry in saved["problems"].items():
        for rule in RULES:
            s = entry["summary"][rule]
            n = f" ({s['reached']}/{s['seeds']})" \
                if s["reached"] < s["seeds"] else ""
            lo, hi = s["learning_rate_range"]
            flo, fhi = s["final_val_accuracy_range"]
            epochs = "not reached" if s["epochs_to_target"] is None else \
                f"{s['epochs_to_target']:g}{n}"
            seconds = "-" if s["seconds_to_target"] is None else \
                f"{s['seconds_to_target']:.1f}{n}"
            lines.append(
                f"| {name} (target {entry['target']:.0%}) | {rule} | "
                f"{s['learning_rate']:.3g} ({lo:.2g}-{hi:.2g}) | "
                f"{s['final_val_accuracy']:.1%} ({flo:.1%}-{fhi:.1%}) | "
                f"{epochs} | {seconds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--problems", default="digits,spirals,shapes")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    available = problems(args.quick)
    saved = {"args": vars(args), "environment": {
        "keras": keras.__version__, "backend": keras.backend.backend(),
        "python": platform.python_version(), "cpus": os.cpu_count()},
        "problems": {}}
    for name in args.problems.split(","):
        problem = available[name]
        data = problem["data"]()
        runs = [run_seed(problem, data, seed, args.epochs)
                for seed in range(args.seeds)]
        saved["problems"][name] = {
            "description": problem["description"],
            "target": problem["target"], "epochs": args.epochs,
            "runs": runs,
            "summary": {rule: summarize([r[rule] for r in runs],
                                        problem["target"])
                        for rule in RULES},
        }
        print(f"{name}: done", flush=True)
    print(markdown(saved))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(saved, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(saved) + "\n")


if __name__ == "__main__":
    main()
