"""The stages of a search: coarse, then fine around the best coarse trial.

One stage is one keras-tuner search (`SeededTuner`) over its own space. In
one process each stage's tuner searches; in keras-tuner's distributed mode the
chief serves each stage's oracle in turn and the workers train
(`tuning.distributed`). `search_hyperparameters` plans the stages and reads
the result; this module runs them.
"""

import math
import os

from keras_trainopt.tuning import distributed
from keras_trainopt.tuning.keras_tuner_adapters import SeededTuner
from keras_trainopt.tuning.keras_tuner_adapters import SpaceHyperModel
from keras_trainopt.tuning.keras_tuner_adapters import finished_trials
from keras_trainopt.tuning.keras_tuner_adapters import trial_row
from keras_trainopt.tuning.search_result import row_config


def plan_stages(max_trials, coarse_fraction, coarse_epochs, epochs):
    """`[(stage, trials, epochs per trial)]`: coarse, then fine if any left."""
    coarse_trials = max(1, min(max_trials, round(max_trials * coarse_fraction)))
    plan = [("coarse", coarse_trials, coarse_epochs)]
    if max_trials > coarse_trials:
        plan.append(("fine", max_trials - coarse_trials, epochs))
    return plan


def new_tuner(stage, index, trials, space, *, build_model, seed,
               markers=None, **kwargs):
    """The keras-tuner search of stage number `index`, seeded from `seed`.

    Args:
        stage, index: the stage's name and its place in the plan.
        trials: the stage's number of trials.
        space: the `SearchSpace` the stage samples.
        build_model, seed: as for `search_hyperparameters`.
        markers: fixed hyperparameters of a distributed search's stage.
        **kwargs: for `SeededTuner` (objective, directory, overwrite,
            on_trial_end).
    """
    return SeededTuner(
        hypermodel=SpaceHyperModel(build_model, space, markers),
        max_trials=trials,
        seed=None if seed is None else oracle_seed(seed, index),
        project_name=stage,
        max_consecutive_failed_trials=trials,
        stage=stage,
        trial_seed=None if seed is None else seed * 1000 + index * 100,
        **kwargs,
    )


# keras-tuner's RandomSearch draws hyperparameter k of a search from
# `random.Random(seed + k)`: two searches whose seeds differ by less than the
# number of values they draw walk the same sequence, shifted, and share most
# of their trials. Seeds this far apart never overlap (a search draws a few
# values per trial).
_SEED_SPACING = 10 ** 6


def oracle_seed(seed, index):
    """The keras-tuner oracle seed of stage `index` of a search with `seed`.

    Why: keras-tuner's `RandomSearch` seeds the k-th value it draws with
    `seed + k`, so nearby seeds (1 + 2 * seed + index, as before) sampled
    the same trials a few values apart: searches with seeds 1 and 2 had
    identical coarse trials. Here every (seed, stage) starts its own stretch
    of a million values. keras-tuner reads 0 as "no seed": the result is
    never 0.

    >>> from keras_trainopt.tuning.stages import oracle_seed
    >>> oracle_seed(0, 0), oracle_seed(0, 1), oracle_seed(1, 0)
    (1, 1000001, 2000001)
    """
    return 1 + (2 * seed + index) * _SEED_SPACING


class Stages:
    """Runs the stages of a plan, the fine one around the best coarse trial.

    In one process (`role=None`) each stage's tuner searches. In
    keras-tuner's distributed mode the chief serves each stage's oracle in
    turn and the workers train (see `tuning.distributed`).

    Args:
        plan: `[(stage, trials, epochs per trial)]`.
        space: the coarse `SearchSpace`.
        zoom: as for `search_hyperparameters`.
        new_tuner: `new_tuner(stage, index, trials, space, markers=...)`.
        role: `None`, "chief" or "worker".
        log: the `SearchLog` (a worker sets its folder from the chief's).
        log_dir: the `log_dir` argument (a worker's folder is under it).
    """

    def __init__(self, plan, space, zoom, new_tuner, role, log, log_dir):
        self.plan, self.space, self.zoom = plan, space, zoom
        self.new_tuner, self.role, self.log = new_tuner, role, log
        self.log_dir = log_dir
        self.metrics = None  # the chief's: the oracles' metric names

    def run(self, fit_args, fit_kwargs):
        """Returns `(tuners, spaces, rows, direction)`: per stage its tuner
        and space, the rows of all trials (a worker's: those it ran), and the
        objective's direction. Stops after a stage without a usable score.
        """
        tuners, stage_spaces, rows, best, direction = {}, {}, [], None, None
        for index, (stage, trials, stage_epochs) in enumerate(self.plan):
            markers = None
            if self.role == "worker":
                markers = distributed.wait_for_stage(index)
                self._worker_log_folder(markers)
                if markers[distributed.STAGE] > index:
                    continue  # came late: that stage is over
                if stage == "fine":
                    best = distributed.coarse_best(markers)
            stage_space = (self.space if stage == "coarse"
                           else self.space.narrow(best, self.zoom))
            if self.role == "chief":
                markers = distributed.markers(
                    index, self._chief_log_folder(),
                    None if stage == "coarse" else knob_values(best))
            stage_spaces[stage] = stage_space
            tuner = tuners[stage] = self.new_tuner(
                stage, index, trials, stage_space, markers=markers)
            direction = tuner.oracle.objective.direction
            if self.role == "chief":
                tuner.oracle.verbose = 0
                tuner.save()
                distributed.serve(tuner.oracle)
            else:
                tuner.search(*fit_args, epochs=stage_epochs, **fit_kwargs)
            if self.role == "worker":
                rows += [row for row in self.log.rows if row["stage"] == stage]
                continue
            # Rows come from the oracle, so a resumed search lists every
            # trial, and the chief every worker's.
            trials_done = finished_trials(tuner.oracle)
            stage_rows = [trial_row(stage, trial, stage_space,
                                    tuner.seed_of(trial.trial_id))
                          for trial in trials_done]
            if self.role == "chief":
                self.metrics = metric_names(trials_done, self.metrics)
            rows += stage_rows
            best = best_row(stage_rows, direction)
            if best is None:
                break
        return tuners, stage_spaces, rows, direction

    def _chief_log_folder(self):
        if self.log.log_dir is None:
            return ""
        return os.path.relpath(self.log.log_dir, self.log_dir)

    def _worker_log_folder(self, markers):
        folder = markers.get(distributed.LOG_FOLDER)
        if self.log.log_dir is None and self.log_dir is not None and folder:
            self.log.log_dir = os.path.normpath(
                os.path.join(self.log_dir, folder))


def metric_names(trials, known):
    """The metric names of `trials`, after those `known`, in order."""
    names = list(known or [])
    for trial in trials:
        names += [name for name in trial.metrics.metrics if name not in names]
    return names


def knob_values(row):
    """The configuration's knobs of a row (what narrowing needs), for JSON."""
    return dict(row_config(row))


def best_row(rows, direction):
    """The row with the best finite score, or `None` if no row has one."""
    usable = [row for row in rows
              if row["score"] is not None and math.isfinite(row["score"])]
    if not usable:
        return None
    pick = max if direction == "max" else min
    return pick(usable, key=lambda row: row["score"])
