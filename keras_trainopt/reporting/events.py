"""Reading the TensorBoard runs under a folder, for the HTML report.

The report reads what TensorBoard would show, so it reads with TensorBoard's
own `EventAccumulator`: scalars (TF1 simple values and the scalar plugin's
tensors) and the text plugin's strings, of every run under a folder.
"""

import os
import re

import numpy as np

# EventAccumulator keeps a sample unless told 0 (= keep everything).
_SIZE_GUIDANCE = {
    "tensors": 0,
    "scalars": 0,
    "histograms": 1,
    "images": 1,
    "audio": 1,
    "compressedHistograms": 1,
}


class Series:
    """One scalar tag of one run, sorted by step.

    Args:
        run: the run's folder relative to the log folder ("" for itself),
            "/"-separated.
        tag: the scalar's tag.
        points: `(step, value)` pairs, in any order.
    """

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
        """The run's own folder name, e.g. "train"."""
        return self.run.rpartition("/")[2]


def read_runs(log_dir):
    """Every run under `log_dir`, read with TensorBoard's `EventAccumulator`.

    Args:
        log_dir: a folder searched recursively for event files.

    Returns:
        `{run: (scalars {tag: [(step, value)]}, texts {tag: [(step, text)]})}`,
        runs sorted, named by their folder relative to `log_dir` ("" for
        `log_dir` itself); empty when there are no event files.
    """
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
    """A text tensor's strings, one per line."""
    parts = [
        item.decode("utf-8", "replace") if isinstance(item, bytes)
        else str(item)
        for item in np.ravel(array)
    ]
    return "\n".join(parts)


def series(runs, pattern):
    """Every scalar series whose tag matches `pattern`, by run then tag.

    Args:
        runs: what `read_runs` returns.
        pattern: a regular expression, searched in each tag.

    Returns:
        A list of `Series`, leaving out tags without points.
    """
    regex = re.compile(pattern)
    return [
        Series(run, tag, points)
        for run, (scalars, _) in runs.items()
        for tag, points in sorted(scalars.items())
        if regex.search(tag) and points
    ]


def latest_texts(runs, keep):
    """The last text of each text tag for which `keep(tag)`, by run then tag.

    Args:
        runs: what `read_runs` returns.
        keep: a predicate on tags.

    Returns:
        A list of `(run, tag, text)`.
    """
    found = []
    for run, (_, texts) in runs.items():
        for tag, events in sorted(texts.items()):
            if keep(tag) and events:
                found.append((run, tag, max(events, key=lambda e: e[0])[1]))
    return found
