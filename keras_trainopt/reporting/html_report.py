"""A self-contained HTML report of the TensorBoard logs under a folder.

TensorBoard answers questions while a server runs; a report is one file to
attach to an issue, a pull request or a lab notebook, readable years later.
`write_report` reads every run under a folder (Keras's `train/` and
`validation/`, the monitors' `monitors/`, `results/`) with TensorBoard's own
reader, draws the charts of the custom-scalars layout with matplotlib and
embeds them as PNG data URIs, next to the `TrainingDoctor`'s advice, the
monitors' verdicts and the logged results. No external file, no JavaScript.
"""

import base64
import datetime
import html
import io
import math
import os
import re

import numpy as np

from keras_trainopt._internal import distribute
from keras_trainopt._internal import validation
from keras_trainopt.reporting import results as results_module

_ADVICE_TAG = "doctor/advice"
_MONITOR_NAMES = {
    "loss_monitor/diagnosis": "LossMonitor",
    "overfitting_monitor/diagnosis": "OverfittingMonitor",
}
# EventAccumulator keeps a sample unless told 0 (= keep everything).
_SIZE_GUIDANCE = {
    "tensors": 0,
    "scalars": 0,
    "histograms": 1,
    "images": 1,
    "audio": 1,
    "compressedHistograms": 1,
}
# Scalar tags that have a chart; every other one is listed at the end.
_CHARTED = (
    r"^loss_monitor/batch_loss$",
    r"^epoch_loss$",
    r"^epoch_accuracy$",
    r"^(epoch_)?generalization_gap$",
    r"^loss_monitor/learning_rate$",
    r"^epoch_learning_rate$",
    r"^update_ratio_by_layer/",
    r"^activations/.+/(saturated|dead)_fraction$",
    "^" + re.escape(results_module.PREFIX),
)
_HEALTHY_RATIO = (1e-4, 1e-2)  # UpdateRatioLogger's and advise()'s band
_FRACTION_THRESHOLD = 0.5  # advise()'s saturated / dead threshold


def write_report(log_dir, output=None):
    """Writes an HTML report of every TensorBoard run under `log_dir`.

    The report holds, where the logs have them: the `TrainingDoctor`'s advice
    and the other monitors' verdicts (text tags), results logged with
    `log_results` (a table and bar charts), and charts of the batch loss, the
    loss per epoch, train and validation accuracy with the generalization
    gap, the learning rate, the weight-update ratio per layer (log scale,
    with the healthy band around 1e-3) and the saturated and dead fractions
    of each layer's activations. Sections without data are left out and
    named under "Not recorded". Needs matplotlib
    (`pip install 'keras-trainopt[demo]'`).

    >>> import tempfile
    >>> from keras_trainopt.reporting import close_run, open_run, write_report
    >>> log_dir = tempfile.mkdtemp()
    >>> writer = open_run(log_dir, "monitors")
    >>> writer.scalars("loss_monitor/batch_loss", range(50),
    ...                [2.3 * 0.95 ** step for step in range(50)])
    >>> writer.text("doctor/advice", "- **ok**: training looks healthy", 0)
    >>> close_run(writer)
    >>> path = write_report(log_dir)
    >>> with open(path) as f:
    ...     page = f.read()
    >>> "training looks healthy" in page, page.count("data:image/png;base64,")
    (True, 1)

    Args:
        log_dir: folder holding TensorBoard event files, searched
            recursively (a run folder, or a folder of run folders).
        output: where to write the HTML (default `<log_dir>/report.html`).

    Returns:
        The absolute path of the report, a string; `None` on a worker other
        than the chief of a multi-worker run, which writes nothing (its
        `log_dir` holds no logs: only the chief writes them).

    Raises:
        ValueError: `log_dir` is not a folder or holds no event files.
        ImportError: matplotlib is not installed.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation"
    (the charts to watch while babysitting training); TensorBoard's event
    files, read with its `EventAccumulator`.
    """
    if not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(
            "`log_dir` must be a folder path (str or os.PathLike). "
            f"Received: log_dir={log_dir!r} (of type {type(log_dir).__name__})"
        )
    output = validation.check_path("output", output, allow_none=True,
                                   folder=False)
    log_dir = os.fspath(log_dir)
    if not distribute.is_chief():
        return None
    if not os.path.isdir(log_dir):
        raise ValueError(
            f"`log_dir` must be an existing folder. Received: log_dir={log_dir!r}"
        )
    charts = _Charts()  # fails early when matplotlib is missing
    runs = _read_runs(log_dir)
    if not runs:
        raise ValueError(
            "`log_dir` must hold TensorBoard event files (searched "
            f"recursively); it holds none. Received: log_dir={log_dir!r}"
        )
    output = os.path.abspath(
        os.fspath(output) if output is not None
        else os.path.join(log_dir, "report.html")
    )
    page = _page(log_dir, runs, charts)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    return output


# -- reading -----------------------------------------------------------------


class _Series:
    """One scalar tag of one run, sorted by step."""

    def __init__(self, run, tag, points):
        points = sorted(points, key=lambda point: point[0])
        self.run = run
        self.tag = tag
        self.steps = np.array([step for step, _ in points], dtype="int64")
        self.values = np.array([value for _, value in points], dtype="float64")

    @property
    def experiment(self):
        """The folder above the run ("" for a run directly in `log_dir`)."""
        return self.run.rpartition("/")[0]

    @property
    def run_name(self):
        return self.run.rpartition("/")[2]


def _read_runs(log_dir):
    """{run: (scalars {tag: [(step, value)]}, texts {tag: [(step, text)]})}."""
    from tensorboard.backend.event_processing import io_wrapper
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    runs = {}
    for path in sorted(io_wrapper.GetLogdirSubdirectories(log_dir)):
        accumulator = EventAccumulator(path, size_guidance=_SIZE_GUIDANCE)
        accumulator.Reload()
        tags = accumulator.Tags()
        scalars, texts = {}, {}
        for tag in tags.get("scalars", []):  # TF1-style simple values
            scalars[tag] = [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in tags.get("tensors", []):
            plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
            events = accumulator.Tensors(tag)
            if plugin == "scalars":
                points = []
                for event in events:
                    value = tensor_util.make_ndarray(event.tensor_proto)
                    if np.size(value) == 1:
                        points.append((event.step, float(np.ravel(value)[0])))
                scalars[tag] = points
            elif plugin == "text":
                texts[tag] = [
                    (event.step,
                     _decode(tensor_util.make_ndarray(event.tensor_proto)))
                    for event in events
                ]
        run = os.path.relpath(path, log_dir).replace(os.sep, "/")
        runs["" if run == "." else run] = (scalars, texts)
    return runs


def _decode(array):
    parts = [
        item.decode("utf-8", "replace") if isinstance(item, bytes)
        else str(item)
        for item in np.ravel(array)
    ]
    return "\n".join(parts)


def _series(runs, pattern):
    """Every scalar series whose tag matches `pattern`, by run then tag."""
    regex = re.compile(pattern)
    return [
        _Series(run, tag, points)
        for run, (scalars, _) in runs.items()
        for tag, points in sorted(scalars.items())
        if regex.search(tag) and points
    ]


def _latest_texts(runs, keep):
    """[(run, tag, text)] of the last text of each tag for which `keep(tag)`."""
    found = []
    for run, (_, texts) in runs.items():
        for tag, events in sorted(texts.items()):
            if keep(tag) and events:
                found.append((run, tag, max(events, key=lambda e: e[0])[1]))
    return found


def _labels(series, name):
    """Legend labels: `name(s)`, led by the experiment when there are several."""
    several = len({s.experiment for s in series}) > 1
    return [
        f"{s.experiment or '.'}: {name(s)}" if several else name(s)
        for s in series
    ]


# -- drawing -----------------------------------------------------------------


class _Charts:
    """Draws with matplotlib's `Figure` (no pyplot, no GUI backend)."""

    def __init__(self):
        try:
            from matplotlib import ticker
            from matplotlib.figure import Figure
        except ImportError as error:  # pragma: no cover - depends on install
            raise ImportError(
                "write_report draws its charts with matplotlib: pip install "
                "'keras-trainopt[demo]' (or pip install matplotlib)"
            ) from error
        self.Figure = Figure
        self.ticker = ticker

    def figure(self, nrows=1, ncols=1, height=3.4):
        figure = self.Figure(
            figsize=(8.5, height * nrows), dpi=100, layout="constrained"
        )
        axes = figure.subplots(nrows, ncols, squeeze=False)
        return figure, list(axes.ravel())

    def lines(self, ax, series, labels, *, epochs=False, alpha=1.0,
              steps=False):
        drawn = []
        for s, label in zip(series, labels):
            x = s.steps + 1 if epochs else s.steps
            y = np.where(np.isfinite(s.values), s.values, np.nan)
            (line,) = ax.plot(
                x, y, lw=1.6, alpha=alpha, label=label,
                marker="o" if len(x) <= 30 else None, markersize=3.5,
                drawstyle="steps-post" if steps else "default",
            )
            drawn.append(line)
        ax.set_xlabel("epoch" if epochs else "step (batches seen)")
        ax.xaxis.set_major_locator(self.ticker.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        return drawn

    @staticmethod
    def log_scale_if_wide(ax, series, ratio=30.0):
        values = np.concatenate([s.values for s in series])
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and (
            values.max() / values.min() >= ratio
        ):
            ax.set_yscale("log")

    @staticmethod
    def legend(ax):
        count = len(ax.get_legend_handles_labels()[0])
        if count == 0:
            return
        if count <= 8:
            ax.legend(fontsize="small")
        else:
            ax.legend(fontsize="x-small", ncol=math.ceil(count / 16),
                      loc="upper left", bbox_to_anchor=(1.01, 1.0))

    @staticmethod
    def png(figure):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f"data:image/png;base64,{encoded}"


def _smooth(values, weight):
    """TensorBoard's debiased exponential moving average; skips NaN/inf."""
    out = np.full(len(values), np.nan)
    last, count = 0.0, 0
    for i, value in enumerate(values):
        if math.isfinite(value):
            last = weight * last + (1 - weight) * value
            count += 1
            out[i] = last / (1 - weight**count)
    return out


def _img(uri, title, caption):
    return (
        f'<figure><img src="{uri}" alt="{html.escape(title)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


# -- sections ----------------------------------------------------------------
# Each returns the section's inner HTML, or None when the logs lack its data.


def _advice_section(runs, charts):
    found = _latest_texts(runs, lambda tag: tag == _ADVICE_TAG)
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
        parts.append(_markdown(text))
    return "\n".join(parts)


def _findings_section(runs, charts):
    found = _latest_texts(runs, lambda tag: tag != _ADVICE_TAG)
    if not found:
        return None
    several = len({run for run, _, _ in found}) > 1
    items = []
    for run, tag, text in found:
        name = _MONITOR_NAMES.get(tag, tag)
        where = f" ({html.escape(run)})" if several else ""
        items.append(
            f"<dt>{html.escape(name)}{where}</dt><dd>{_markdown(text)}</dd>"
        )
    return "<dl>" + "\n".join(items) + "</dl>"


def _results_section(runs, charts):
    series = _series(runs, "^" + re.escape(results_module.PREFIX))
    if not series:
        return None
    rows = []  # (experiment, name, latest value)
    for s in series:
        rows.append(
            (s.experiment, s.tag[len(results_module.PREFIX):], s.values[-1])
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
    for ax, (metric, bars) in zip(axes, groups.items()):
        labels = [label for label, _ in bars]
        values = [value for _, value in bars]
        positions = np.arange(len(bars))[::-1]
        ax.barh(positions, values, color="#4c72b0", height=0.6)
        ax.set_yticks(positions, labels)
        ax.set_title(metric or "results", fontsize="medium")
        for position, value in zip(positions, values):
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
    series = _series(runs, r"^loss_monitor/batch_loss$")
    if not series:
        return None
    figure, (ax,) = charts.figure()
    labels = _labels(series, lambda s: "batch loss")
    notes = []
    for s, label in zip(series, labels):
        window = max(1, len(s.values) // 50)
        (raw,) = charts.lines(ax, [s], [label], alpha=0.35 if window >= 3
                              else 1.0)
        if window >= 3:
            ax.plot(s.steps, _smooth(s.values, 1 - 2 / (window + 1)),
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
    series = _series(runs, r"^epoch_loss$")
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
    accuracy = _series(runs, r"^epoch_accuracy$")
    gap = _series(runs, r"^generalization_gap$") or _series(
        runs, r"^epoch_generalization_gap$"
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
    per_step = _series(runs, r"^loss_monitor/learning_rate$")
    per_epoch = _series(runs, r"^epoch_learning_rate$")
    if not per_step and not per_epoch:
        return None
    panels = [(s, False) for s in (per_step,) if s] + [
        (s, True) for s in (per_epoch,) if s
    ]
    figure, axes = charts.figure(ncols=len(panels))
    for ax, (series, epochs) in zip(axes, panels):
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
    prefix = "update_ratio_by_layer/"
    series = _series(runs, "^" + re.escape(prefix))
    if not series:
        return None
    low, high = _HEALTHY_RATIO
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
    kinds = []
    for kind, title in (("saturated", "saturated units (tanh / sigmoid)"),
                        ("dead", "dead units (ReLU, zero on every input)")):
        series = _series(runs, rf"^activations/.+/{kind}_fraction$")
        if series:
            kinds.append((series, title))
    if not kinds:
        return None
    figure, axes = charts.figure(nrows=len(kinds))
    for ax, (series, title) in zip(axes, kinds):
        charts.lines(ax, series,
                     _labels(series, lambda s: s.tag.split("/")[1]),
                     epochs=True)
        ax.axhline(_FRACTION_THRESHOLD, color="#c44e52", ls="--", lw=1,
                   label=f"advice threshold ({_FRACTION_THRESHOLD:.0%})")
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


_SECTIONS = (
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


def _other_tags(runs):
    charted = [re.compile(pattern) for pattern in _CHARTED]
    items = []
    for run, (scalars, _) in runs.items():
        other = [tag for tag in sorted(scalars)
                 if not any(regex.search(tag) for regex in charted)]
        if other:
            items.append(
                f"<li><code>{html.escape(run or '.')}</code>: "
                + ", ".join(f"<code>{html.escape(tag)}</code>" for tag in other)
                + "</li>"
            )
    if not items:
        return ""
    count = sum(item.count("<code>") - 1 for item in items)
    return (
        f"<details><summary>{count} more scalar tags, not charted here "
        "(open TensorBoard to see them)</summary><ul>"
        + "".join(items) + "</ul></details>"
    )


# -- the page ----------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
       max-width: 920px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
     margin-top: 1.8em; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
dt { font-weight: 600; margin-top: 0.6em; }
dd p, dd ul { margin: 0.2em 0; }
li.problem { color: #a61b1b; }
li.warning { color: #8a5a00; }
li.ok { color: #2e6b30; }
.meta { color: #555; }
"""


def _page(log_dir, runs, charts):
    body, missing = [], []
    for section_id, title, build in _SECTIONS:
        inner = build(runs, charts)
        if inner is None:
            missing.append(title)
            continue
        body.append(
            f'<section id="{section_id}"><h2>{html.escape(title)}</h2>\n'
            f"{inner}</section>"
        )
    absolute = os.path.abspath(log_dir)
    run_list = ", ".join(
        f"<code>{html.escape(run or '.')}</code>" for run in runs
    )
    meta = [
        f"<p class='meta'>Logs: <code>{html.escape(absolute)}</code> "
        f"({len(runs)} run{'s' if len(runs) != 1 else ''}: {run_list}). "
        f"Written {datetime.datetime.now():%Y-%m-%d %H:%M} by "
        "<code>keras_trainopt.reporting.write_report</code>; browse the same "
        f"logs live with <code>tensorboard --logdir "
        f"{html.escape(absolute)}</code>.</p>"
    ]
    if missing:
        meta.append(
            "<p class='meta' id='not-recorded'>Not recorded: "
            + "; ".join(html.escape(title) for title in missing) + ".</p>"
        )
    title = f"Training report: {os.path.basename(absolute) or absolute}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(meta + body)
        + "\n"
        + _other_tags(runs)
        + "\n</body></html>\n"
    )


def _markdown(text):
    """The little Markdown the monitors write: lines, "- " items, **bold**."""
    blocks, items = [], []

    def flush():
        if items:
            blocks.append("<ul>" + "".join(items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("- ", "* ")):
            line = line[2:]
            severity = re.match(r"\*\*(problem|warning|ok)\*\*", line)
            css = f' class="{severity.group(1)}"' if severity else ""
            items.append(f"<li{css}>{_inline(line)}</li>")
            continue
        flush()
        if line:
            blocks.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(blocks)


def _inline(text):
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
