"""Reports a search as its trials end: a console line, a TensorBoard session.

The HParams records themselves are written by `reporting.hparams`; this
module decides what a trial reports: its knobs and stage as hyperparameters,
its curves (less the divergence flag) as metrics, its score.
"""

from keras.src.utils import io_utils  # print_msg: not exported by keras 3

from keras_trainopt.reporting import hparams
from keras_trainopt.tuning import divergence
from keras_trainopt.tuning.search_result import format_value
from keras_trainopt.tuning.search_result import row_config
from keras_trainopt.tuning.search_space import knob_table

STAGES = ("coarse", "fine")


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

    def trial_ended(self, row, history):
        """Prints the trial's line and writes its HParams session.

        Args:
            row: the trial's row of the trials table.
            history: its last fit's `History.history`.
        """
        if self.verbose:
            io_utils.print_msg(
                f"{row['stage']} trial {row['trial']}: {row['status']}, "
                f"score {format_value(row['score'])}, {row_config(row)!r}"
            )
        if self.log_dir is None:
            return
        values = {k: row[k] for k in ("stage", *knob_table(), "schedule")}
        written = hparams.write_session(
            self.log_dir, f"{row['stage']}-{row['trial']}", values, history,
            score=row["score"], skip=(divergence.DIVERGED,),
        )
        self.metrics += [tag for tag in written if tag not in self.metrics]

    def write_experiment(self, space):
        """Writes the HParams experiment: the stage, `space`'s knobs, metrics.

        Args:
            space: the coarse stage's `SearchSpace`.
        """
        if self.log_dir is None:
            return
        domains = hparams.domains(choices={"stage": STAGES})
        domains.update(space.hparams_domains())
        hparams.write_experiment(self.log_dir, domains, self.metrics)
