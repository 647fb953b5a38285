"""What weight averages and ensembles buy: test accuracy on the digits.

    python benchmarks/averaging_outcome.py --trials 5 --epochs 40 \\
        --plot docs/averaging_outcome.png --json averaging_outcome.json

One fixed train/validation/test split of scikit-learn's digits (the demo's,
60/20/20) and one fixed small network (64-32-10 MLP, Nesterov SGD at a
constant rate, batch 32). For each of `--trials` trials, five members are
trained from different seeds with passive callbacks that do not change
training: `ExponentialMovingAverage`, `StochasticWeightAveraging` over the
last quarter of the epochs (at the same constant rate) and
`CheckpointEnsemble` (the last 5 epoch ends). Reported per trial:

- final weights, EMA, SWA and the checkpoint ensemble of the trial's first
  member;
- a snapshot ensemble: one more run of the same budget with
  `SnapshotEnsemble(cycles=5)` (its cosine cycles replace the constant rate);
- seed ensembles of the first k = 1..5 members.

The table gives the mean and the standard deviation over trials of the test
accuracy. Validation data is not used to pick anything.
"""

import argparse
import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainopt as kt  # noqa: E402
from keras_trainopt.demo import load_digits_split  # noqa: E402

MEMBERS = 5


def build(hidden, learning_rate):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(kt.nesterov_sgd(learning_rate),
                  loss="sparse_categorical_crossentropy")
    return model


def accuracy(model_or_probabilities, x, y):
    if isinstance(model_or_probabilities, keras.Model):
        probabilities = model_or_probabilities.predict(x, verbose=0,
                                                       batch_size=512)
    else:
        probabilities = model_or_probabilities
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def with_weights(template, weights, args):
    model = build(args.hidden, args.learning_rate)
    model.set_weights(weights)
    return model


def run_trial(trial, data, args):
    (x, y), _, (x_test, y_test) = data
    fit_args = dict(epochs=args.epochs, batch_size=32, verbose=0)
    scores = {}
    member_probabilities = []
    for member in range(MEMBERS):
        seed = 1000 * trial + member
        keras.utils.set_random_seed(seed)
        model = build(args.hidden, args.learning_rate)
        if member == 0:
            ema = kt.ExponentialMovingAverage(args.ema_decay,
                                              apply_at_end=False)
            swa = kt.StochasticWeightAveraging(
                args.epochs - args.epochs // 4, apply_at_end=False
            )
            checkpoints = kt.CheckpointEnsemble(every=1, keep=5)
            model.fit(x, y, callbacks=[ema, swa, checkpoints], **fit_args)
            scores["final weights"] = accuracy(model, x_test, y_test)
            scores["EMA"] = accuracy(
                with_weights(model, ema.averaged_weights(), args),
                x_test, y_test)
            scores["SWA (last 25% of epochs)"] = accuracy(
                with_weights(model, swa.averaged_weights(), args),
                x_test, y_test)
            scores["checkpoint ensemble (last 5 epochs)"] = accuracy(
                checkpoints.ensemble(), x_test, y_test)
        else:
            model.fit(x, y, **fit_args)
        member_probabilities.append(
            model.predict(x_test, verbose=0, batch_size=512)
        )
    for k in range(1, MEMBERS + 1):
        scores[f"seed ensemble, {k} member{'s' if k > 1 else ''}"] = accuracy(
            np.mean(member_probabilities[:k], axis=0), x_test, y_test
        )
    keras.utils.set_random_seed(1000 * trial)
    model = build(args.hidden, args.learning_rate)
    snapshots = kt.SnapshotEnsemble(cycles=5)
    model.fit(x, y, callbacks=[snapshots], **fit_args)
    scores["snapshot ensemble (5 cycles)"] = accuracy(
        snapshots.ensemble(), x_test, y_test)
    scores["snapshot run, last snapshot alone"] = accuracy(
        model, x_test, y_test)
    return scores


ORDER = [
    "final weights",
    "EMA",
    "SWA (last 25% of epochs)",
    "checkpoint ensemble (last 5 epochs)",
    "snapshot run, last snapshot alone",
    "snapshot ensemble (5 cycles)",
] + [f"seed ensemble, {k} member{'s' if k > 1 else ''}"
     for k in range(1, MEMBERS + 1)]


def table(results):
    lines = ["| method | test accuracy, mean | std | min | max |",
             "|---|---:|---:|---:|---:|"]
    for name in ORDER:
        values = [r[name] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(
            f"| {name} | {100 * statistics.mean(values):.2f}% "
            f"| {100 * spread:.2f} | {100 * min(values):.2f} "
            f"| {100 * max(values):.2f} |"
        )
    return "\n".join(lines)


def plot(results, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4),
                                      gridspec_kw={"width_ratios": [3, 2]})
    names = ORDER[:6]
    means = [100 * statistics.mean(r[n] for r in results) for n in names]
    stds = [100 * statistics.stdev([r[n] for r in results])
            if len(results) > 1 else 0.0 for n in names]
    left.errorbar(means, range(len(names)), xerr=stds, fmt="o",
                  color="#4c72b0", capsize=3)
    left.set_yticks(range(len(names)), names)
    left.invert_yaxis()
    left.axvline(means[0], color="#555555", lw=1, ls="--")
    low = min(m - s for m, s in zip(means, stds, strict=True))
    high = max(m + s for m, s in zip(means, stds, strict=True))
    left.set_xlim(low - 0.5, min(100.0, high + 0.5))
    left.set_xlabel("test accuracy (%)")
    left.set_title("one training run each (dashed: final weights)")
    ks = list(range(1, MEMBERS + 1))
    seed_names = ORDER[6:]
    for r in results:
        right.plot(ks, [100 * r[n] for n in seed_names], color="#bbbbbb",
                   lw=1)
    right.errorbar(
        ks, [100 * statistics.mean(r[n] for r in results) for n in seed_names],
        yerr=[100 * statistics.stdev([r[n] for r in results])
              if len(results) > 1 else 0.0 for n in seed_names],
        color="#dd8452", lw=2, capsize=3, marker="o", label="mean \u00b1 std",
    )
    right.set_xticks(ks)
    right.set_xlabel("members (different seeds)")
    right.set_ylabel("test accuracy (%)")
    right.set_title("seed ensembles (grey: each trial)")
    right.legend(loc="lower right")
    fig.suptitle(
        f"digits, 64-{args.hidden}-10 MLP, {args.epochs} epochs, "
        f"{len(results)} trials"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--plot", help="write the figure here (PNG)")
    parser.add_argument("--json", help="write the per-trial scores here")
    parser.add_argument("--replot", metavar="JSON",
                        help="only redraw the table and figure from a --json "
                             "file of an earlier run")
    args = parser.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        print(table(saved["trials"]))
        if args.plot:
            plot(saved["trials"], args.plot, argparse.Namespace(**saved["args"]))
        return

    data = load_digits_split(seed=0)
    results = []
    for trial in range(args.trials):
        results.append(run_trial(trial, data, args))
        print(f"trial {trial + 1}/{args.trials}: final "
              f"{results[-1]['final weights']:.4f}", flush=True)
    print(f"\nkeras {keras.__version__}, backend {keras.backend.backend()}; "
          f"digits test set of {len(data[2][1])} images\n")
    print(table(results))
    if args.plot:
        plot(results, args.plot, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "trials": results}, f, indent=1)


if __name__ == "__main__":
    main()
