"""TensorBoard writing, in one place.

Callbacks never create event files themselves: they ask `open_run(log_dir,
run)` for a writer and write scalars, histograms and text through it. Writers
are shared per folder (two monitors pointed at one `log_dir` write one event
file, not two racing ones), and only the chief of a multi-worker run gets a
real one: everywhere else `open_run` returns `None`.

Events are made by TensorBoard itself: its plugins' protocol-buffer builders
(`scalar_pb`, `histogram_pb`, `text_pb`, the custom-scalar layout) and its
`Event` protocol buffer, written to TensorBoard's event-file format by
`event_file.EventFile`, in the caller's thread (TensorBoard's
`EventFileWriter` checksums each event in pure Python on a writer thread:
see that module). None of it needs TensorFlow, so the same files come out
on the JAX and PyTorch backends, and no TensorFlow op runs per value
written: a `tf.summary.scalar` call costs about a millisecond in eager
mode, a `scalar_pb` tens of microseconds. A monitor writes everything it
has for one step as one event (`write`, `write_series`).
"""

import os
import threading
import time

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.histogram import summary_v2 as histogram_summary
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.scalar import summary_v2 as scalar_summary
from tensorboard.plugins.text import summary_v2 as text_summary
from tensorboard.util import tensor_util

from keras_trainopt._internal import dir_lock
from keras_trainopt._internal import distribute
from keras_trainopt._internal import validation
from keras_trainopt.reporting import event_file

_LOCK = threading.Lock()
_OPEN = {}  # folder -> [RunWriter, number of users, folder claim]
# (tag, description) -> the `Summary.Value` of `scalar_pb(tag, 0.0, ...)`,
# shared by every writer: a monitor's tags are the same in every `fit`.
_SCALAR_TEMPLATES = {}
_MAX_TEMPLATES = 10_000


class RunWriter:
    """Writes scalars, histograms and text to one TensorBoard run folder.

    Get one from `open_run` and give it back with `close_run`; do not build
    it directly.
    """

    def __init__(self, path):
        self.path = path
        self._writer = event_file.EventFile(path)
        self._layout_written = False
        self._layout_due = False
        self._omitted_charts = set()

    def _add(self, summary, step):
        self._write_due_layout()  # before the first value: charts known now
        summary = _own_summary(summary)
        self._writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step),
                            summary=summary)
        )

    def _write_due_layout(self):
        if self._layout_due:
            self._layout_due = False
            self._layout_written = True
            from keras_trainopt.reporting import layout

            self._add(layout.layout_summary(self._omitted_charts), 0)

    def write_layout(self):
        """Writes the custom-scalars layout (`reporting.layout`) once.

        It goes out with the first value written, so that the monitors can
        first leave out the charts that cannot have data (`omit_charts`).
        """
        if not self._layout_written:
            self._layout_due = True

    def omit_charts(self, titles):
        """Leaves charts (`layout.CHARTS` titles) out of the layout.

        For the charts that cannot have data in this run, e.g. the
        saturated fraction of a network without tanh or sigmoid layers. Has
        no effect once the layout is written (with the first value).
        """
        self._omitted_charts.update(titles)

    def _scalar_value(self, tag, value, description=None):
        """The `Summary.Value` of `scalar_pb(tag, value, description)`.

        TensorBoard's builder makes the metadata and the tensor anew for
        every value (about 0.1 ms); a monitor writing every step would spend
        most of its time there. So its output is kept per tag as a template,
        shared by every writer of the process (each `fit` opens a new one),
        and a copy gets the new number (a float32, as `scalar_pb` stores it).
        """
        template = _SCALAR_TEMPLATES.get((tag, description))
        if template is None:
            template = _own_summary(
                scalar_summary.scalar_pb(tag, 0.0, description=description)
            ).value[0]
            if len(_SCALAR_TEMPLATES) >= _MAX_TEMPLATES:
                _SCALAR_TEMPLATES.clear()
            _SCALAR_TEMPLATES[(tag, description)] = template
        copy = summary_pb2.Summary.Value()
        copy.CopyFrom(template)
        copy.tensor.float_val[0] = float(value)
        return copy

    def write(self, step, scalars=None, histograms=None, buckets=30,
              histogram_counts=None):
        """Writes several values at one step, as one event.

        A monitor that logs many values per step (one per layer, say) pays
        for one event instead of one per value.

        >>> import tempfile
        >>> from keras_trainopt.reporting import close_run, open_run
        >>> writer = open_run(tempfile.mkdtemp(), "monitors")
        >>> writer.write(10, scalars={"loss": 0.25, "lr": 0.1},
        ...              histograms={"ratios": [1e-3, 2e-3, 5e-4]})
        >>> close_run(writer)

        Args:
            step: the x-axis value.
            scalars: `{tag: number}`.
            histograms: `{tag: array-like}` (flattened), bucketed by
                TensorBoard's `histogram_pb` into `buckets` buckets.
            histogram_counts: `{tag: (counts, edges)}`, histograms already
                bucketed by `np.histogram` (see `histogram_from_counts`).
        """
        summary = summary_pb2.Summary()
        for tag, value in (scalars or {}).items():
            summary.value.append(self._scalar_value(tag, value))
        for tag, values in (histograms or {}).items():
            values = np.asarray(values, dtype="float64").ravel()
            summary.value.extend(
                _own_summary(
                    histogram_summary.histogram_pb(tag, values, buckets)
                ).value
            )
        for tag, (counts, edges) in (histogram_counts or {}).items():
            summary.value.append(_bucketed_value(tag, counts, edges))
        self._add(summary, step)

    def write_series(self, steps, series, descriptions=None):
        """Writes `series[tag][i]` at step `steps[i]`: one event per step.

        For a monitor that buffers readings and writes them in a batch (the
        loss and the learning rate at each reading): every tag's value at
        one step goes in one event.

        >>> import tempfile
        >>> from keras_trainopt.reporting import close_run, open_run
        >>> writer = open_run(tempfile.mkdtemp(), "monitors")
        >>> writer.write_series([10, 20], {"loss": [0.5, 0.4],
        ...                                "lr": [0.1, 0.1]},
        ...                     descriptions={"loss": "The batch loss."})
        >>> close_run(writer)

        Args:
            steps: the x-axis values.
            series: `{tag: values}`, each as long as `steps`.
            descriptions: `{tag: Markdown}`, shown by TensorBoard beside
                the chart; it goes with the tag's first value.

        Raises:
            ValueError: a series is not as long as `steps`.
        """
        steps = list(steps)
        series = {tag: list(values) for tag, values in series.items()}
        for tag, values in series.items():
            if len(values) != len(steps):
                raise ValueError(
                    f"Each series must have one value per step ({len(steps)})."
                    f" Received: {len(values)} values for tag={tag!r}"
                )
        descriptions = descriptions or {}
        for i, step in enumerate(steps):
            summary = summary_pb2.Summary()
            for tag, values in series.items():
                summary.value.append(self._scalar_value(
                    tag, values[i], None if i else descriptions.get(tag)))
            self._add(summary, step)

    def scalars(self, tag, steps, values, description=None):
        """Writes a series of scalars: `values[i]` at step `steps[i]`.

        `description` (Markdown, shown by TensorBoard beside the chart) goes
        with the first value of the series.
        """
        self.write_series(steps, {tag: values}, {tag: description})

    def scalar(self, tag, value, step):
        self.write(step, scalars={tag: value})

    def histogram(self, tag, values, step, buckets=30):
        """A histogram of `values` (any array-like; flattened)."""
        self.write(step, histograms={tag: values}, buckets=buckets)

    def histogram_from_counts(self, tag, counts, edges, step):
        """A histogram already bucketed by `np.histogram(...)`.

        Written in the format of TensorBoard's histogram plugin: a `[k, 3]`
        tensor of (left edge, right edge, count), with its metadata.
        """
        self.write(step, histogram_counts={tag: (counts, edges)})

    def text(self, tag, text, step):
        """Markdown text for TensorBoard's text plugin."""
        self._add(text_summary.text_pb(tag, text), step)

    def hparams(self, values, trial_id=None):
        """The hyperparameter values of the session this run folder holds.

        For TensorBoard's HParams dashboard: `values` maps names to bools,
        numbers or strings (`None` values are left out).
        """
        values = {k: v for k, v in values.items() if v is not None}
        self._add(hparams_summary.hparams_pb(values, trial_id=trial_id), 0)

    def hparams_config(self, domains, metrics):
        """The experiment of an HParams dashboard: the knobs and the metrics.

        Args:
            domains: `{name: tensorboard.plugins.hparams.summary_v2 Domain}`.
            metrics: the scalar tags every session records.
        """
        self._add(
            hparams_summary.hparams_config_pb(
                hparams=[hparams_summary.HParam(name, domain)
                         for name, domain in domains.items()],
                metrics=[hparams_summary.Metric(tag) for tag in metrics],
            ),
            0,
        )

    def flush(self):
        """Writes the buffered events to the file (for readers while training)."""
        self._writer.flush()

    def _close(self):
        self._write_due_layout()  # a run that wrote no value: the layout
        self._writer.close()


def _bucketed_value(tag, counts, edges):
    """The `Summary.Value` of a histogram bucketed by `np.histogram`.

    TensorBoard's histogram plugin format: a `[k, 3]` tensor of (left edge,
    right edge, count), with its metadata.
    """
    buckets = np.stack(
        [edges[:-1], edges[1:], np.asarray(counts, "float64")], axis=1
    )
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=histogram_metadata.create_summary_metadata(
            display_name=None, description=None
        ),
        tensor=tensor_util.make_tensor_proto(buckets),
    )


def _own_summary(summary):
    """`summary` as TensorBoard's `Summary` class.

    Some TensorBoard builders return TensorFlow's own Summary class when
    TensorFlow is installed: same wire format, other class.
    """
    if isinstance(summary, summary_pb2.Summary):
        return summary
    return summary_pb2.Summary.FromString(summary.SerializeToString())


def open_run(log_dir, run):
    """A shared writer for `<log_dir>/<run>`, or `None` (no `log_dir`, or not chief).

    Every `open_run` needs a matching `close_run`.

    >>> import tempfile
    >>> from keras_trainopt.reporting import close_run, open_run
    >>> log_dir = tempfile.mkdtemp()
    >>> writer = open_run(log_dir, "monitors")
    >>> writer is open_run(log_dir, "monitors")  # shared per folder
    True
    >>> writer.scalar("generalization_gap", 0.05, step=0)
    >>> close_run(writer); close_run(writer)
    >>> open_run(None, "monitors") is None
    True

    Args:
        log_dir: the TensorBoard folder, or `None` for no output.
        run: the run's sub-folder, e.g. "monitors".

    Reference: TensorBoard's plugin summary builders and event-file format.
    """
    log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
    if not isinstance(run, str):
        raise TypeError(
            f"`run` must be a folder name (a string). Received: run={run!r}"
        )
    if log_dir is None or not distribute.is_chief():
        return None
    path = os.path.abspath(os.path.join(log_dir, run))
    with _LOCK:
        entry = _OPEN.get(path)
        if entry is None:
            # one training process per run folder: a second fails here,
            # when its `fit` starts, instead of interleaving event files
            claim = dir_lock.claim(path, "TensorBoard run folder")
            entry = _OPEN[path] = [RunWriter(path), 0, claim]
        entry[1] += 1
        entry[0].write_layout()
        return entry[0]


def close_run(writer):
    """Flushes `writer`; closes it when its last user gives it back.

    >>> import tempfile
    >>> from keras_trainopt.reporting import close_run, open_run
    >>> writer = open_run(tempfile.mkdtemp(), "monitors")
    >>> close_run(writer)
    >>> close_run(None)  # a no-op, like open_run's None

    Args:
        writer: a `RunWriter` from `open_run`, or `None`.

    Reference: see `open_run`.
    """
    if writer is None:
        return
    if not isinstance(writer, RunWriter):
        raise TypeError(
            "`writer` must be a RunWriter from `open_run`, or None. "
            f"Received: writer={writer!r} (of type {type(writer).__name__})"
        )
    with _LOCK:
        entry = _OPEN.get(writer.path)
        writer.flush()
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _OPEN[writer.path]
            writer._close()
            dir_lock.release(entry[2])
