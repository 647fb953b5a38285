"""TensorBoard writing, in one place.

Callbacks never create event files themselves: they ask `open_run(log_dir,
run)` for a writer and write scalars, histograms and text through it. Writers
are shared per folder (two monitors pointed at one `log_dir` write one event
file, not two racing ones), written with TensorBoard's own `tf.summary` ops,
and only the chief of a multi-worker run gets a real one: everywhere else
`open_run` returns `None`.
"""

import os
import threading

import numpy as np

from keras_trainopt._internal import distribute

_LOCK = threading.Lock()
_OPEN = {}  # folder -> [RunWriter, number of users]


class RunWriter:
    """Writes to one TensorBoard run folder with `tf.summary`.

    Get one from `open_run` and give it back with `close_run`; do not build
    it directly.
    """

    def __init__(self, path):
        import tensorflow as tf

        self._tf = tf
        self.path = path
        self._writer = tf.summary.create_file_writer(path)
        self._layout_written = False

    def write_layout(self):
        """Writes the custom-scalars layout (`reporting.layout`) once."""
        if not self._layout_written:
            from keras_trainopt.reporting import layout

            self.raw(layout.layout_summary())
            self._layout_written = True

    def scalars(self, tag, steps, values):
        """Writes a series of scalars: `values[i]` at step `steps[i]`."""
        with self._writer.as_default():
            for step, value in zip(steps, values):
                self._tf.summary.scalar(tag, float(value), step=int(step))

    def scalar(self, tag, value, step):
        self.scalars(tag, [step], [value])

    def histogram(self, tag, values, step, buckets=30):
        """A histogram of `values` (any array-like; flattened)."""
        with self._writer.as_default():
            self._tf.summary.histogram(
                tag, np.asarray(values, dtype="float64").ravel(),
                step=int(step), buckets=buckets,
            )

    def text(self, tag, text, step):
        """Markdown text for TensorBoard's text plugin."""
        with self._writer.as_default():
            self._tf.summary.text(tag, text, step=int(step))

    def raw(self, summary_pb, step=0):
        """A serialized `Summary` protocol buffer, e.g. a custom-scalar layout."""
        with self._writer.as_default():
            self._tf.summary.experimental.write_raw_pb(
                summary_pb.SerializeToString(), step=int(step)
            )

    def flush(self):
        self._writer.flush()

    def _close(self):
        self._writer.close()


def open_run(log_dir, run):
    """A shared writer for `<log_dir>/<run>`, or `None` (no `log_dir`, or not chief).

    Every `open_run` needs a matching `close_run`.
    """
    if log_dir is None or not distribute.is_chief():
        return None
    path = os.path.abspath(os.path.join(os.fspath(log_dir), run))
    with _LOCK:
        entry = _OPEN.get(path)
        if entry is None:
            os.makedirs(path, exist_ok=True)
            entry = _OPEN[path] = [RunWriter(path), 0]
        entry[1] += 1
        entry[0].write_layout()
        return entry[0]


def close_run(writer):
    """Flushes `writer`; closes it when its last user gives it back."""
    if writer is None:
        return
    with _LOCK:
        entry = _OPEN.get(writer.path)
        writer.flush()
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _OPEN[writer.path]
            writer._close()
