"""The report's sections: which tags each charts, and what it says of them.

Each section reads the runs (`events.read_runs`), draws with `charts.Charts`
and returns its inner HTML, or None when the logs lack its data; the page
(`page.render`) frames them. The tags come from `tags`, the thresholds the
charts mark from `diagnostics.advice`, so a chart draws the very lines the
advice judges by.
"""

import html
import math
import re

import numpy as np

from keras_trainopt.diagnostics import advice
from keras_trainopt.reporting import events
from keras_trainopt.reporting import page
from keras_trainopt.reporting import tags
from keras_trainopt.reporting.charts import smooth

_MONITOR_NAMES = {
    tags.LOSS_DIAGNOSIS: "LossMonitor",
    tags.FIT_DIAGNOSIS: "OverfittingMonitor",
}
# Scalar tags that have a chart; every other one is listed at the end.
CHARTED = (
    tags.exactly(tags.LOSS_BATCH),
    tags.exactly(tags.EPOCH_LOSS),
    tags.exactly(tags.EPOCH_ACCURACY),
    tags.exactly(tags.GENERALIZATION_GAP),
    tags.exactly(tags.EPOCH_GENERALIZATION_GAP),
    tags.exactly(tags.LEARNING_RATE_STEP),
    tags.exactly(tags.EPOCH_LEARNING_RATE),
    tags.starting(tags.UPDATE_RATIO_BY_LAYER_PREFIX),
    tags.activation_pattern(tags.SATURATED_FRACTION),
    tags.activation_pattern(tags.DEAD_FRACTION),
    tags.starting(tags.RESULTS_PREFIX),
)


def _labels(series, name):
    """Legend labels: `name(s)`, led by the experiment when there are several."""
    several = len({s.experiment for s in series}) > 1
    return [
        f"{s.experiment or '.'}: {name(s)}" if several else name(s)
        for s in series
    ]


def _img(uri, title, caption):
    """A chart as a `<figure>`: the PNG data URI and its caption (HTML)."""
    return (
        f'<figure><img src="{uri}" alt="{html.escape(title)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


# -- sections ----------------------------------------------------------------
# Each returns the section's inner HTML, or None when the logs lack its data.


def _advice_section(runs, charts):
    """The `TrainingDoctor`'s latest advice, per run."""
    found = events.latest_texts(runs, lambda tag: tag == tags.ADVICE)
    if not found:
        return None
    several = len(found) > 1
    parts = [
        "<p>What the <code>TrainingDoctor</code> made of the monitors at the "
        "end of training, worst first.</p>"
    ]
    for run, _, text in found:
        if several:
            parts.append(f"<h3>{html.escape(run)}</h3>")
        parts.append(page.markdown(text))
    return "\n".join(parts)


def _findings_section(runs, charts):
    """The other monitors' latest verdicts (every other text tag)."""
    found = events.latest_texts(runs, lambda tag: tag != tags.ADVICE)
    if not found:
        return None
    several = len({run for run, _, _ in found}) > 1
    items = []
    for run, tag, text in found:
        name = _MONITOR_NAMES.get(tag, tag)
        where = f" ({html.escape(run)})" if several else ""
        items.append(
            f"<dt>{html.escape(name)}{where}</dt><dd>{page.markdown(text)}</dd>"
        )
    return "<dl>" + "\n".join(items) + "</dl>"


def _results_section(runs, charts):
    """`log_results` numbers: a table and a bar chart per metric."""
    series = events.series(runs, tags.starting(tags.RESULTS_PREFIX))
    if not series:
        return None
    rows = []  # (experiment, name, latest value)
    for s in series:
        rows.append(
            (s.experiment, s.tag[len(tags.RESULTS_PREFIX):], s.values[-1])
        )
    several = len({experiment for experiment, _, _ in rows}) > 1
    head = ("<th>run</th>" if several else "") + "<th>result</th><th>value</th>"
    body = "".join(
        "<tr>"
        + (f"<td>{html.escape(experiment or '.')}</td>" if several else "")
        + f"<td>{html.escape(name)}</td><td>{value:.4g}</td></tr>"
        for experiment, name, value in rows
    )
    table = f"<table><tr>{head}</tr>{body}</table>"

    groups = {}  # metric -> [(label, value)]
    for experiment, name, value in rows:
        metric, _, variant = name.rpartition("/")
        label = variant if not several else f"{experiment or '.'}: {variant}"
        groups.setdefault(metric, []).append((label, value))
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    height = max(1.6, 0.45 * max(len(bars) for bars in groups.values()) + 1.0)
    figure, axes = charts.figure(nrows, ncols, height=height)
    # a grid of 3 columns: spare cells (hidden below) are left over
    for ax, (metric, bars) in zip(axes, groups.items(), strict=False):
        labels = [label for label, _ in bars]
        values = [value for _, value in bars]
        positions = np.arange(len(bars))[::-1]
        ax.barh(positions, values, color="#4c72b0", height=0.6)
        ax.set_yticks(positions, labels)
        ax.set_title(metric or "results", fontsize="medium")
        for position, value in zip(positions, values, strict=True):
            ax.annotate(f"{value:.4g}", (value, position), xytext=(3, 0),
                        textcoords="offset points", va="center",
                        fontsize="small")
        low, high = min(0.0, *values), max(0.0, *values)
        ax.set_xlim(low * 1.15, high * 1.15 if high > 0 else 0.1)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    figure.suptitle("results (latest value of each)", fontsize="medium")
    return table + _img(
        charts.png(figure), "results",
        "Numbers logged after training with <code>log_results</code>; names "
        "<code>&lt;metric&gt;/&lt;variant&gt;</code> share a chart, e.g. the "
        "final weights against their moving average or an ensemble.",
    )


def _batch_loss_section(runs, charts):
    """`LossMonitor`'s batch loss, raw and smoothed; non-finite steps named."""
    series = events.series(runs, tags.exactly(tags.LOSS_BATCH))
    if not series:
        return None
    figure, (ax,) = charts.figure()
    labels = _labels(series, lambda s: "batch loss")
    notes = []
    for s, label in zip(series, labels, strict=True):
        window = max(1, len(s.values) // 50)
        (raw,) = charts.lines(ax, [s], [label], alpha=0.35 if window >= 3
                              else 1.0)
        if window >= 3:
            ax.plot(s.steps, smooth(s.values, 1 - 2 / (window + 1)),
                    color=raw.get_color(), lw=1.8, label=label + " (smoothed)")
        bad = np.flatnonzero(~np.isfinite(s.values))
        if bad.size:
            notes.append(
                f"{html.escape(label)}: not finite (NaN or inf) from step "
                f"{int(s.steps[bad[0]])}."
            )
    charts.log_scale_if_wide(ax, series, ratio=100.0)
    ax.set_ylabel("loss")
    ax.set_title("batch loss (LossMonitor)")
    charts.legend(ax)
    caption = (
        "The training loss per batch. Healthy: a fast fall that levels "
        "off. Too high a learning rate: it explodes or bounces; too low: a "
        "slow, nearly straight decline. " + " ".join(notes)
    )
    return _img(charts.png(figure), "batch loss", caption)


def _epoch_loss_section(runs, charts):
    """Keras' loss per epoch, training and validation."""
    series = events.series(runs, tags.exactly(tags.EPOCH_LOSS))
    if not series:
        return None
    figure, (ax,) = charts.figure()
    charts.lines(ax, series, _labels(series, lambda s: s.run_name),
                 epochs=True)
    charts.log_scale_if_wide(ax, series, ratio=100.0)
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch (keras.callbacks.TensorBoard)")
    charts.legend(ax)
    return _img(charts.png(figure), "loss per epoch",
                "Training and validation loss at the end of each epoch.")


def _accuracy_section(runs, charts):
    """Keras' accuracy per epoch and `OverfittingMonitor`'s gap."""
    accuracy = events.series(runs, tags.exactly(tags.EPOCH_ACCURACY))
    gap = events.series(runs, tags.exactly(tags.GENERALIZATION_GAP)) or (
        events.series(runs, tags.exactly(tags.EPOCH_GENERALIZATION_GAP))
    )
    if not accuracy and not gap:
        return None
    figure, axes = charts.figure(nrows=int(bool(accuracy)) + int(bool(gap)))
    if accuracy:
        ax = axes[0]
        charts.lines(ax, accuracy, _labels(accuracy, lambda s: s.run_name),
                     epochs=True)
        ax.set_ylabel("accuracy")
        ax.set_title("accuracy: train and validation")
        charts.legend(ax)
    if gap:
        ax = axes[-1]
        charts.lines(ax, gap, _labels(gap, lambda s: "train - validation"),
                     epochs=True)
        ax.axhline(0.0, color="#555555", lw=0.8)
        ax.set_ylabel("gap")
        ax.set_title("generalization gap (OverfittingMonitor's metric, "
                     "train - validation)")
        charts.legend(ax)
    return _img(
        charts.png(figure), "accuracy and generalization gap",
        "A gap that keeps growing while validation stalls is overfitting "
        "(more data, augmentation, regularization, or stop at the best "
        "validation epoch); low accuracy on both sides with no gap is "
        "underfitting (a bigger model or longer training).",
    )


def _learning_rate_section(runs, charts):
    """The learning rate per step (`LossMonitor`) and per epoch (Keras)."""
    per_step = events.series(runs, tags.exactly(tags.LEARNING_RATE_STEP))
    per_epoch = events.series(runs, tags.exactly(tags.EPOCH_LEARNING_RATE))
    if not per_step and not per_epoch:
        return None
    panels = [(s, False) for s in (per_step,) if s] + [
        (s, True) for s in (per_epoch,) if s
    ]
    figure, axes = charts.figure(ncols=len(panels))
    for ax, (series, epochs) in zip(axes, panels, strict=True):
        name = (lambda s: "learning rate") if not epochs else (
            lambda s: s.run_name)
        # a rate holds until the next value: draw steps, not slopes
        charts.lines(ax, series, _labels(series, name), epochs=epochs,
                     steps=True)
        charts.log_scale_if_wide(ax, series, ratio=20.0)
        ax.set_ylabel("learning rate")
        ax.set_title("per step (LossMonitor)" if not epochs
                     else "per epoch (keras.callbacks.TensorBoard)")
        if len(series) > 1:
            charts.legend(ax)
    return _img(charts.png(figure), "learning rate",
                "The optimizer's learning rate as the schedule or decay "
                "callback set it.")


def _update_ratio_section(runs, charts):
    """`UpdateRatioLogger`'s ratio per layer against `advise`'s band."""
    prefix = tags.UPDATE_RATIO_BY_LAYER_PREFIX
    series = events.series(runs, tags.starting(prefix))
    if not series:
        return None
    low, high = advice.RATIO_BAND
    figure, (ax,) = charts.figure(height=3.8)
    for s in series:
        s.values = np.where(s.values > 0, s.values, np.nan)  # log scale
    charts.lines(ax, series, _labels(series, lambda s: s.tag[len(prefix):]))
    ax.axhspan(low, high, color="#55a868", alpha=0.12,
               label=f"healthy band [{low:g}, {high:g}]")
    ax.axhline(1e-3, color="#55a868", ls="--", lw=1, label="1e-3")
    ax.set_yscale("log")
    values = np.concatenate([s.values for s in series])
    values = values[np.isfinite(values)]
    if values.size:
        ax.set_ylim(min(values.min() / 2, low / 2),
                    max(values.max() * 2, high * 2))
    ax.set_ylabel("||update|| / ||weights||")
    ax.set_title("weight-update / weight ratio per layer (UpdateRatioLogger)")
    charts.legend(ax)
    return _img(
        charts.png(figure), "update ratios",
        "For each layer, the size of one update relative to the weights "
        "(its largest weight). Around 1e-3 is healthy; far above, that "
        "layer's learning rate is too high, far below, too low.",
    )


def _activations_section(runs, charts):
    """`ActivationMonitor`'s saturated and dead fractions, and thresholds."""
    kinds = []
    for statistic, threshold, title in (
        (tags.SATURATED_FRACTION, advice.SATURATION_THRESHOLD,
         "saturated units (tanh / sigmoid)"),
        (tags.DEAD_FRACTION, advice.DEAD_THRESHOLD,
         "dead units (ReLU, zero on every input)"),
    ):
        series = events.series(runs, tags.activation_pattern(statistic))
        if series:
            kinds.append((series, threshold, title))
    if not kinds:
        return None
    figure, axes = charts.figure(nrows=len(kinds))
    for ax, (series, threshold, title) in zip(axes, kinds, strict=True):
        charts.lines(ax, series,
                     _labels(series, lambda s: s.tag.split("/")[1]),
                     epochs=True)
        ax.axhline(threshold, color="#c44e52", ls="--", lw=1,
                   label=f"advice threshold ({threshold:.0%})")
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(charts.ticker.PercentFormatter(1.0))
        ax.set_ylabel("fraction of units")
        ax.set_title(f"{title} (ActivationMonitor)")
        charts.legend(ax)
    return _img(
        charts.png(figure), "activations",
        "Per layer, the fraction of units that are saturated (tanh/sigmoid "
        "near their limits: no gradient flows) or dead (ReLU outputs zero "
        "for every probe input). Above half, the layer needs another "
        "initialization, a lower learning rate or normalization.",
    )


SECTIONS = (
    ("advice", "What to do (TrainingDoctor)", _advice_section),
    ("findings", "What the monitors found", _findings_section),
    ("results", "Results", _results_section),
    ("batch-loss", "Batch loss", _batch_loss_section),
    ("epoch-loss", "Loss per epoch", _epoch_loss_section),
    ("accuracy", "Accuracy and generalization gap", _accuracy_section),
    ("learning-rate", "Learning rate", _learning_rate_section),
    ("update-ratios", "Update ratio per layer", _update_ratio_section),
    ("activations", "Activations: saturated and dead units",
     _activations_section),
)


def build(runs, charts):
    """Every section, in order: `[(section id, title, inner HTML or None)]`.

    Args:
        runs: what `events.read_runs` returns.
        charts: a `charts.Charts`.
    """
    return [(section_id, title, make(runs, charts))
            for section_id, title, make in SECTIONS]


def uncharted_tags(runs):
    """`[(run, [tag])]` of the scalar tags no section charts, runs in order.

    Args:
        runs: what `events.read_runs` returns.
    """
    charted = [re.compile(pattern) for pattern in CHARTED]
    found = []
    for run, (scalars, _) in runs.items():
        other = [tag for tag in sorted(scalars)
                 if not any(regex.search(tag) for regex in charted)]
        if other:
            found.append((run, other))
    return found
