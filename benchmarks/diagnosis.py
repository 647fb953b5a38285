"""Does `TrainingDoctor` name the true cause? A benchmark of broken trainings.

    python benchmarks/diagnosis.py --seeds 3 \\
        --json benchmarks/results/diagnosis_tensorflow.json \\
        --markdown benchmarks/results/diagnosis_tensorflow.md \\
        --plot docs/diagnosis_tensorflow.png
    KERAS_BACKEND=jax python benchmarks/diagnosis.py --seeds 3 \\
        --json benchmarks/results/diagnosis_jax.json \\
        --markdown benchmarks/results/diagnosis_jax.md  # (or torch)
    python benchmarks/diagnosis.py --quick          # one seed, a smoke run
    python benchmarks/diagnosis.py --held-out       # the held-out ones only

Each scenario breaks one thing in an otherwise ordinary training on
scikit-learn's digits (8x8 images scaled to [0, 1], 1200 training and 597
validation images, a 64-64-10 ReLU MLP, batch 32, a few epochs) or on
generated data, so that it has exactly one known cause; the healthy
scenarios break nothing. Every run uses `TrainingDoctor` at its defaults,
with the validation images (at most 256) as `x_probe`. Recorded per run:
the `finding` of the doctor's first advice (the confusion table compares it
with the true cause), whether a healthy run got any finding other than
`healthy`, and whether the advice list holds a contradictory pair
(`keras_trainopt.diagnostics.advice.CONTRADICTIONS`).

The seed sets the initial weights, the batch order and the data split.
"""

import argparse
import collections
import json
import math
import os
import platform
import sys
import time

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_trainopt import TrainingDoctor  # noqa: E402
from keras_trainopt import nesterov_sgd  # noqa: E402
from keras_trainopt.diagnostics import advice as advice_rules  # noqa: E402

SCCE = "sparse_categorical_crossentropy"


def digits(seed, scale=1.0 / 16.0, n_train=1200):
    """Digits scaled by `scale` (1/16: [0, 1]), split by `seed`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data * scale).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:n_train], y[:n_train]), (x[1200:], y[1200:])


def mlp(hidden=(64,), activation="relu", output="softmax", **dense):
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(units, activation=activation, **dense)
               for units in hidden]
    layers.append(keras.layers.Dense(10, activation=output))
    return keras.Sequential(layers)


def compiled(model, optimizer, loss=SCCE):
    model.compile(optimizer, loss=loss, metrics=["accuracy"])
    return model


def circles(seed, n=1000):
    """Two noisy concentric circles (radius 1 and 2), labels 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * math.pi, n)
    radius = 1.0 + y + rng.normal(0, 0.1, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    x, y = x.astype("float32"), y.astype("int32")
    return (x[:700], y[:700]), (x[700:], y[700:])


# Each scenario: seed -> (model, (x, y), (x_val, y_val), fit kwargs). The
# model is built after keras.utils.set_random_seed(seed).


def lr_far_too_high(seed):
    return (compiled(mlp(), nesterov_sgd(3.0, momentum=0.9)), *digits(seed),
            dict(epochs=8))


def lr_too_high_relus_die(seed):
    return (compiled(mlp(), keras.optimizers.SGD(2.0)), *digits(seed),
            dict(epochs=8))


def lr_too_high_tanh(seed):
    return (compiled(mlp(activation="tanh"), keras.optimizers.SGD(2.0)),
            *digits(seed), dict(epochs=8))


def lr_too_high_momentum(seed):
    # heavy-ball momentum 0.99 at 0.1 (an effective step of 10): the loss
    # falls, then climbs back and bounces
    return (compiled(mlp(), keras.optimizers.SGD(0.1, momentum=0.99)),
            *digits(seed), dict(epochs=8))


def lr_too_high_momentum_tanh(seed):
    return (compiled(mlp(activation="tanh"),
                     keras.optimizers.SGD(0.1, momentum=0.99)),
            *digits(seed), dict(epochs=8))


def nan_in_the_data(seed):
    (x, y), val = digits(seed)
    x = x.copy()
    x[np.random.default_rng(seed).choice(len(x), 3, replace=False), 5] = np.nan
    return compiled(mlp(), keras.optimizers.Adam(1e-3)), (x, y), val, dict(
        epochs=5)


def lr_too_low(seed):
    return (compiled(mlp(), keras.optimizers.SGD(1e-4)), *digits(seed),
            dict(epochs=8))


def healthy_mlp(seed):
    return (compiled(mlp(), keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=8))


def healthy_cnn(seed):
    (x, y), (xv, yv) = digits(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return (compiled(model, keras.optimizers.Adam(1e-3)),
            (x.reshape(-1, 8, 8, 1), y), (xv.reshape(-1, 8, 8, 1), yv),
            dict(epochs=6))


def healthy_batchnorm(seed):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return (compiled(model, keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=6))


def healthy_dropout(seed):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return (compiled(model, keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=8))


def overfitting(seed):
    (x, y), val = digits(seed, n_train=80)
    return (compiled(mlp((512,)), keras.optimizers.Adam(1e-3)), (x, y), val,
            dict(epochs=60, batch_size=16))


def underfitting(seed):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(1),  # a one-number bottleneck for ten classes
        keras.layers.Dense(10, activation="softmax"),
    ])
    return (compiled(model, keras.optimizers.Adam(1e-2)), *digits(seed),
            dict(epochs=8))


def underfitting_linear_circles(seed):
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(2, activation="softmax")])
    return (compiled(model, keras.optimizers.Adam(1e-2)), *circles(seed),
            dict(epochs=8))


def saturated_tanh(seed):
    model = mlp((64, 64), activation="tanh",
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=3.0, seed=seed))
    return (compiled(model, keras.optimizers.SGD(0.01)), *digits(seed),
            dict(epochs=8))


def dead_relu_bias(seed):
    model = mlp((64,), bias_initializer=keras.initializers.Constant(-5.0))
    return (compiled(model, keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=6))


def vanishing_sigmoid(seed):
    model = mlp((32,) * 8, activation="sigmoid")
    return (compiled(model, keras.optimizers.SGD(0.1)), *digits(seed),
            dict(epochs=6))


def unnormalized_inputs(seed):
    return (compiled(mlp(), keras.optimizers.SGD(0.01)),
            *digits(seed, scale=255.0 / 16.0), dict(epochs=6))


def softmax_with_from_logits(seed):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return (compiled(mlp(), keras.optimizers.Adam(1e-3), loss=loss),
            *digits(seed), dict(epochs=6))


# Added after the rules were written, and not tuned on: a check that the
# reasoning carries over to variants it was not built from.


def logits_into_a_probability_loss(seed):
    return (compiled(mlp(output=None), keras.optimizers.Adam(1e-3)),
            *digits(seed), dict(epochs=6))


def sigmoid_large_init(seed):
    model = mlp((64, 64), activation="sigmoid",
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=4.0, seed=seed))
    return (compiled(model, keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=6))


def dead_relu_cnn(seed):
    (x, y), (xv, yv) = digits(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu",
                            bias_initializer=keras.initializers.Constant(-4.0)),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return (compiled(model, keras.optimizers.Adam(1e-3)),
            (x.reshape(-1, 8, 8, 1), y), (xv.reshape(-1, 8, 8, 1), yv),
            dict(epochs=5))


def healthy_tanh_sgd(seed):
    return (compiled(mlp(activation="tanh"), keras.optimizers.SGD(0.1)),
            *digits(seed), dict(epochs=8))


def heavy_l2(seed):
    model = mlp((64,), kernel_regularizer=keras.regularizers.L2(1.0))
    return (compiled(model, keras.optimizers.Adam(1e-3)), *digits(seed),
            dict(epochs=6))


def pixels_with_adam(seed):
    return (compiled(mlp(), keras.optimizers.Adam(1e-3)),
            *digits(seed, scale=255.0 / 16.0), dict(epochs=5))


def adam_too_low(seed):
    return (compiled(mlp(), keras.optimizers.Adam(1e-6)), *digits(seed),
            dict(epochs=6))


def deep_tanh_sgd_high(seed):
    return (compiled(mlp((64, 64, 64), activation="tanh"),
                     keras.optimizers.SGD(3.0)), *digits(seed),
            dict(epochs=6))


HELD_OUT = {
    "held out: linear output + probability loss": (
        logits_into_a_probability_loss, "loss_output_mismatch"),
    "held out: sigmoid, large initial weights": (sigmoid_large_init,
                                                 "saturated_units"),
    "held out: CNN, ReLU bias -4": (dead_relu_cnn, "dead_units"),
    "held out: healthy tanh MLP, SGD 0.1": (healthy_tanh_sgd, "healthy"),
    "held out: L2 of 1.0": (heavy_l2, "underfitting"),
    "held out: pixels 0-255, Adam": (pixels_with_adam,
                                     "unnormalized_inputs"),
    "held out: Adam 1e-6": (adam_too_low, "learning_rate_too_low"),
    "held out: deep tanh, SGD 3.0": (deep_tanh_sgd_high,
                                     "learning_rate_too_high"),
}

SCENARIOS = {
    # name: (builder, true cause)
    "lr far too high (blow-up, plateau)": (lr_far_too_high,
                                           "learning_rate_too_high"),
    "lr too high (ReLUs die, no blow-up)": (lr_too_high_relus_die,
                                            "learning_rate_too_high"),
    "lr too high (tanh, loss jumps far above chance)": (
        lr_too_high_tanh, "learning_rate_too_high"),
    "lr too high (oscillation: momentum 0.99, ReLU)": (
        lr_too_high_momentum, "learning_rate_too_high"),
    "lr too high (oscillation: momentum 0.99, tanh)": (
        lr_too_high_momentum_tanh, "learning_rate_too_high"),
    "NaN in the data": (nan_in_the_data, "non_finite_loss"),
    "lr too low": (lr_too_low, "learning_rate_too_low"),
    "healthy MLP": (healthy_mlp, "healthy"),
    "healthy CNN": (healthy_cnn, "healthy"),
    "healthy BatchNorm": (healthy_batchnorm, "healthy"),
    "healthy Dropout": (healthy_dropout, "healthy"),
    "small data, big model": (overfitting, "overfitting"),
    "one-unit bottleneck": (underfitting, "underfitting"),
    "linear model, two circles": (underfitting_linear_circles,
                                  "underfitting"),
    "tanh, large initial weights": (saturated_tanh, "saturated_units"),
    "ReLU, bias -5": (dead_relu_bias, "dead_units"),
    "deep sigmoid net": (vanishing_sigmoid, "vanishing_gradients"),
    "pixels 0-255": (unnormalized_inputs, "unnormalized_inputs"),
    "softmax + from_logits=True": (softmax_with_from_logits,
                                   "loss_output_mismatch"),
    **HELD_OUT,
}


def run(name, seed):
    """Trains scenario `name` with `seed`; returns the doctor and seconds."""
    builder, _ = SCENARIOS[name]
    keras.utils.set_random_seed(seed)
    model, (x, y), (x_val, y_val), fit_kwargs = builder(seed)
    fit_kwargs = {"batch_size": 32, **fit_kwargs}
    doctor = TrainingDoctor(x_probe=x_val[:256], verbose=0)
    start = time.perf_counter()
    model.fit(x, y, validation_data=(x_val, y_val), verbose=0,
              callbacks=[doctor], **fit_kwargs)
    return doctor, time.perf_counter() - start


def record(name, seed, keep_doctor=False):
    """One run's row; with `keep_doctor`, the doctor too (not for JSON)."""
    truth = SCENARIOS[name][1]
    doctor, seconds = run(name, seed)
    findings = [a.finding for a in doctor.advice]
    return {
        "scenario": name, "seed": seed, "truth": truth,
        "first": findings[0], "findings": findings,
        "advice": [str(a) for a in doctor.advice],
        "severities": [a.severity for a in doctor.advice],
        "contradictions": advice_rules.contradictions(doctor.advice),
        "seconds": round(seconds, 2),
        **({"doctor": doctor} if keep_doctor else {}),
    }


def summarize(rows):
    correct = sum(r["first"] == r["truth"] for r in rows)
    healthy = [r for r in rows if r["truth"] == "healthy"]
    clean = sum(all(f == "healthy" for f in r["findings"]) for r in healthy)
    no_problem = sum("problem" not in r["severities"] for r in healthy)
    held_out = [r for r in rows if r["scenario"] in HELD_OUT]
    return {
        "runs": len(rows), "first_correct": correct,
        "held_out_runs": len(held_out),
        "held_out_correct": sum(r["first"] == r["truth"] for r in held_out),
        "healthy_runs": len(healthy), "healthy_clean": clean,
        "healthy_no_problem": no_problem,
        "contradictory_lists": sum(bool(r["contradictions"]) for r in rows),
    }


def confusion(rows):
    truths = list(dict.fromkeys(r["truth"] for r in rows))
    named = sorted({r["first"] for r in rows} - set(truths))
    columns = truths + named
    table = collections.OrderedDict(
        (t, collections.Counter(r["first"] for r in rows if r["truth"] == t))
        for t in truths)
    return columns, table


def markdown(rows, summary, backend, seeds):
    columns, table = confusion(rows)
    lines = [
        "| true cause \\ first finding | " + " | ".join(
            c.replace("_", " ") for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for truth, counts in table.items():
        cells = [str(counts[c]) if counts[c] else "." for c in columns]
        lines.append(f"| {truth.replace('_', ' ')} | " + " | ".join(cells)
                     + " |")
    per = ["| scenario | true cause | first findings (per seed) | right |",
           "|---|---|---|---|"]
    for name, (_, truth) in SCENARIOS.items():
        mine = [r for r in rows if r["scenario"] == name]
        if not mine:
            continue
        right = sum(r["first"] == truth for r in mine)
        per.append(f"| {name} | {truth} | "
                   + ", ".join(r["first"] for r in mine)
                   + f" | {right}/{len(mine)} |")
    s = summary
    return "\n".join([
        f"Backend: {backend}, seeds {seeds}; {s['runs']} runs.",
        "",
        f"- first finding names the true cause: {s['first_correct']}/"
        f"{s['runs']} ({s['first_correct'] / s['runs']:.0%})",
        f"- healthy runs with no finding but `healthy`: {s['healthy_clean']}"
        f"/{s['healthy_runs']}; with no problem: {s['healthy_no_problem']}/"
        f"{s['healthy_runs']}",
        f"- advice lists with a contradictory pair: "
        f"{s['contradictory_lists']}",
        *([f"- of which the held-out scenarios (added after the rules): "
           f"{s['held_out_correct']}/{s['held_out_runs']}"]
          if s["held_out_runs"] else []),
        "",
        *lines,
        "",
        *per,
    ])


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns, table = confusion(rows)
    grid = np.array([[table[t][c] for c in columns] for t in table])
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(columns),
                                    1.0 + 0.45 * len(table)))
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(columns)),
                  [c.replace("_", " ") for c in columns], rotation=45,
                  ha="right")
    ax.set_yticks(range(len(table)), [t.replace("_", " ") for t in table])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if grid[i, j]:
                ax.text(j, i, grid[i, j], ha="center", va="center",
                        color="white" if grid[i, j] > grid.max() / 2
                        else "black")
    ax.set_xlabel("the doctor's first finding")
    ax.set_ylabel("true cause")
    ax.set_title(f"TrainingDoctor: first finding vs true cause "
                 f"({keras.backend.backend()})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one seed (a smoke run)")
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--held-out", action="store_true",
                        help="only the scenarios added after the rules")
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    seeds = range(1 if args.quick else args.seeds)
    names = args.only or (list(HELD_OUT) if args.held_out
                          else list(SCENARIOS))
    rows = []
    for name in names:
        for seed in seeds:
            row = record(name, seed)
            rows.append(row)
            mark = "ok " if row["first"] == row["truth"] else "XX "
            print(f"{mark}{name} [{seed}] {row['seconds']}s: "
                  + " | ".join(row["advice"]), flush=True)
    summary = summarize(rows)
    backend = keras.backend.backend()
    text = markdown(rows, summary, backend, len(seeds))
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend, "keras": keras.__version__,
                       "python": platform.python_version(),
                       "summary": summary, "rows": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(rows, args.plot)
    return summary


if __name__ == "__main__":
    main()
