"""Drawing the report's charts with matplotlib, as PNG data URIs.

The report is one self-contained file, so each chart is a PNG embedded in
the page. matplotlib is an optional dependency (`keras-trainopt[report]`): it
is imported when a `Charts` is made, not when this module is.
"""

import base64
import io
import math

import numpy as np

from keras_trainopt.diagnostics import loss_curve


class Charts:
    """Draws with matplotlib's `Figure` (no pyplot, no GUI backend).

    Making one imports matplotlib, so `write_report` fails before it reads
    anything when matplotlib is missing.

    Raises:
        ImportError: matplotlib is not installed.
    """

    def __init__(self):
        try:
            from matplotlib import ticker
            from matplotlib.figure import Figure
        except ImportError as error:  # pragma: no cover - depends on install
            raise ImportError(
                "write_report draws its charts with matplotlib: pip install "
                "'keras-trainopt[report]' (or pip install matplotlib)"
            ) from error
        self.Figure = Figure
        self.ticker = ticker

    def figure(self, nrows=1, ncols=1, height=3.4):
        """A figure 850 pixels wide and its axes, a flat list.

        Args:
            nrows, ncols: the grid of axes.
            height: inches per row (at 100 dpi).
        """
        figure = self.Figure(
            figsize=(8.5, height * nrows), dpi=100, layout="constrained"
        )
        axes = figure.subplots(nrows, ncols, squeeze=False)
        return figure, list(axes.ravel())

    def lines(self, ax, series, labels, *, epochs=False, alpha=1.0,
              steps=False):
        """Draws one line per `events.Series`; returns the lines.

        Args:
            ax: the axes.
            series: the series to draw.
            labels: their legend labels.
            epochs: x is the epoch, 1-based (the series' steps + 1), not the
                step.
            alpha: the lines' opacity.
            steps: draw a staircase (a value holds until the next one).
        """
        drawn = []
        for s, label in zip(series, labels, strict=True):
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
        """A log y axis when the positive values span `ratio` or more."""
        values = np.concatenate([s.values for s in series])
        values = values[np.isfinite(values)]
        if values.size and values.min() > 0 and (
            values.max() / values.min() >= ratio
        ):
            ax.set_yscale("log")

    @staticmethod
    def legend(ax):
        """A legend, outside the axes in columns when it has many entries."""
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
        """The figure as a `data:image/png;base64,...` URI."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f"data:image/png;base64,{encoded}"


def smooth(values, weight):
    """The debiased exponential moving average of `values`, skipping NaN/inf.

    TensorBoard's smoothing, which is `diagnostics.RunningSmooth`'s; a
    non-finite value is left out of the average and gets NaN, so a curve
    that diverges keeps its smoothed line up to the divergence.

    Args:
        values: the series, a 1-D array.
        weight: the smoothing factor in [0, 1) (`RunningSmooth`'s `beta`).

    Returns:
        A float array of the length of `values`.
    """
    out = np.full(len(values), np.nan)
    running = loss_curve.RunningSmooth(weight)
    for i, value in enumerate(values):
        if math.isfinite(value):
            out[i] = running.update(value)
    return out
