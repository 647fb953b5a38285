"""Reports a search as its trials end: a console line, a TensorBoard session.

The HParams records themselves are written by `reporting.hparams`; this
module decides what a trial reports: its knobs and stage as hyperparameters,
its curves (less the divergence flag) as metrics, its score.
"""

import glob
import json
import os

from keras_trainopt._internal import console
from keras_trainopt.reporting import hparams
from keras_trainopt.tuning import divergence
from keras_trainopt.tuning.search_result import format_value
from keras_trainopt.tuning.search_result import row_config
from keras_trainopt.tuning.search_space import knob_table

STAGES = ("coarse", "fine")

# Trial metrics that are bookkeeping, not curves: not written as sessions'
# metrics.
SKIPPED = (divergence.DIVERGED, "final_objective")

# The file that marks a folder as one search's HParams records, with the
# keras-tuner `directory` of that search (so that a resume finds its folder).
MARKER = "keras_trainopt_search.json"


def holds_search(folder):
    """Whether `folder` already holds a search's HParams records.

    A search's folder has the `MARKER` file; one written before the marker
    existed has event files at its top or in `coarse-*` / `fine-*` runs.
    """
    if os.path.exists(os.path.join(folder, MARKER)):
        return True
    patterns = [os.path.join(folder, "*tfevents*")]
    patterns += [os.path.join(folder, f"{stage}-*", "*tfevents*")
                 for stage in STAGES]
    return any(glob.glob(pattern) for pattern in patterns)


def claim_folder(log_dir, directory, overwrite):
    """The folder a search writes its HParams records to, claimed for it.

    Why: two searches in one folder reuse the run names (`coarse-0`, ...),
    so their sessions mix in TensorBoard's HParams dashboard, one search's
    values next to the other's scores. A search therefore gets `log_dir`
    itself when that holds no search yet, and otherwise the first free
    `<log_dir>/search-<n>` (n = 2, 3, ...). The one exception is a resume:
    the same keras-tuner `directory` without `overwrite` continues the
    search that wrote the folder, so it writes there again. The claim is a
    marker file created exclusively, so two searches started at once never
    get the same folder.

    >>> import tempfile, os
    >>> from keras_trainopt.tuning.search_log import claim_folder
    >>> root = tempfile.mkdtemp()
    >>> first = claim_folder(root, "/tmp/kt-a", overwrite=False)
    >>> second = claim_folder(root, "/tmp/kt-b", overwrite=False)
    >>> os.path.relpath(first, root), os.path.relpath(second, root)
    ('.', 'search-2')
    >>> os.path.relpath(claim_folder(root, "/tmp/kt-b", overwrite=False), root)
    'search-2'

    Args:
        log_dir: the `log_dir` given to the search.
        directory: the search's keras-tuner folder.
        overwrite: whether the search starts afresh in `directory`.

    Returns:
        The folder's path: `log_dir` or `<log_dir>/search-<n>`.
    """
    directory = os.path.abspath(directory)
    number = 1
    while True:
        folder = log_dir if number == 1 else os.path.join(
            log_dir, f"search-{number}")
        marker = os.path.join(folder, MARKER)
        if not overwrite and _marked_by(marker) == directory:
            return folder  # a resume of the search that wrote it
        if not holds_search(folder):
            os.makedirs(folder, exist_ok=True)
            try:
                with open(marker, "x") as f:
                    json.dump({"directory": directory}, f)
                return folder
            except FileExistsError:  # another search claimed it just now
                pass
        number += 1


def _marked_by(marker):
    """The keras-tuner directory recorded in `marker`, or `None`."""
    try:
        with open(marker) as f:
            return json.load(f).get("directory")
    except (OSError, ValueError, AttributeError):
        return None


class SearchLog:
    """Reports each trial as it ends, and the experiment when all have.

    Args:
        log_dir: TensorBoard folder for the HParams records, or `None`.
        verbose: 0 silent, 1 one line per trial.
    """

    def __init__(self, log_dir, verbose):
        self.log_dir = log_dir
        self.verbose = verbose
        self.metrics = []  # the tags the sessions recorded, in order
        self.rows = []  # the rows of the trials that ended here, in order

    def trial_ended(self, row, history):
        """Prints the trial's line and writes its HParams session.

        Args:
            row: the trial's row of the trials table.
            history: its last fit's `History.history`.
        """
        self.rows.append(row)
        if self.verbose:
            console.print_msg(
                f"{row['stage']} trial {row['trial']}: {row['status']}, "
                f"score {format_value(row['score'])}, {row_config(row)!r}"
            )
        if self.log_dir is None:
            return
        values = {k: row[k] for k in ("stage", *knob_table(), "schedule")}
        written = hparams.write_session(
            self.log_dir, f"{row['stage']}-{row['trial']}", values, history,
            score=row["score"], skip=SKIPPED,
        )
        self.metrics += [tag for tag in written if tag not in self.metrics]

    def write_experiment(self, space, metrics=None):
        """Writes the HParams experiment: the stage, `space`'s knobs, metrics.

        Args:
            space: the coarse stage's `SearchSpace`.
            metrics: the metric tags of the sessions; default: those the
                sessions written here recorded (a distributed search's
                chief, which trains nothing, names the oracle's).
        """
        if self.log_dir is None:
            return
        domains = hparams.domains(choices={"stage": STAGES})
        domains.update(space.hparams_domains())
        metrics = self.metrics if metrics is None else [
            tag for tag in metrics if tag not in SKIPPED]
        hparams.write_experiment(self.log_dir, domains, metrics)
