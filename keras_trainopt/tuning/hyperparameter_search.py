"""Random search over learning rate, decay and regularization, coarse then fine.

The practice: search the initial learning rate and the regularization
strength on a log scale, by random search rather than grid search, first
coarse (wide ranges) then fine (narrow ranges around the best), and distrust a
best value that sits at the edge of its range. keras-tuner does the sampling,
the bookkeeping and the per-trial checkpoints; this module chooses the space,
runs the two stages, applies each trial's decay schedule, and reports.
"""

import functools
import math
import os
import tempfile
import warnings

import keras
import keras_tuner
from keras.src.utils import io_utils  # print_msg: not exported by keras 3

from keras_trainopt._internal import validation
from keras_trainopt.tuning import distributed
from keras_trainopt.tuning import model_check
from keras_trainopt.tuning import search_log
from keras_trainopt.tuning.keras_tuner_adapters import SeededTuner
from keras_trainopt.tuning.keras_tuner_adapters import SpaceHyperModel
from keras_trainopt.tuning.keras_tuner_adapters import finished_trials
from keras_trainopt.tuning.keras_tuner_adapters import trial_row
from keras_trainopt.tuning.search_log import SearchLog
from keras_trainopt.tuning.search_result import SearchResult
from keras_trainopt.tuning.search_result import row_config
from keras_trainopt.tuning.search_space import SearchSpace


def search_hyperparameters(
    build_model,
    x,
    y=None,
    validation_data=None,
    max_trials=20,
    epochs=10,
    *,
    batch_size=32,
    search_space=None,
    objective="val_accuracy",
    coarse_fraction=0.5,
    coarse_epochs=None,
    zoom=0.25,
    edge_fraction=0.1,
    callbacks=None,
    log_dir=None,
    directory=None,
    overwrite=False,
    seed=None,
    verbose=1,
):
    """Random search over learning rate, decay schedule and regularization.

    The search runs in two stages on keras-tuner's `RandomSearch`. The
    coarse stage samples the whole `search_space`: the initial learning rate
    and the L2 factor log-uniformly, dropout uniformly, one of the decay
    schedules (step, exponential, 1/t) with its parameters. The fine stage
    narrows every range to `zoom` of its width around the best coarse
    trial, keeps that trial's schedule, and samples again. Every trial calls
    `build_model(config)` with the sampled `HyperparameterConfig`, trains
    for `epochs` epochs with the config's decay callback (which sets the
    learning rate, whatever the model was compiled with), stops early on a
    NaN loss, and is scored by the best epoch's `objective`.

    When it matters: the initial learning rate alone moves the final
    accuracy more than most architecture choices, and the right L2 or
    dropout depends on the data. Searching them by hand takes an afternoon
    of babysitting; this call takes `max_trials` short runs.

    >>> import keras, numpy as np, tempfile
    >>> from keras_trainopt.tuning import search_hyperparameters
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 4)).astype("float32")
    >>> y = (x.sum(axis=1) > 0).astype("int32")
    >>> def build_model(config):
    ...     model = keras.Sequential([
    ...         keras.Input((4,)),
    ...         keras.layers.Dense(8, activation="relu",
    ...                            kernel_regularizer=config.regularizer()),
    ...         keras.layers.Dropout(config.dropout),
    ...         keras.layers.Dense(2, activation="softmax")])
    ...     model.compile(config.optimizer(), "sparse_categorical_crossentropy",
    ...                   metrics=["accuracy"])
    ...     return model
    >>> result = search_hyperparameters(
    ...     build_model, x[:192], y[:192], validation_data=(x[192:], y[192:]),
    ...     max_trials=2, epochs=1, seed=0, verbose=0,
    ...     directory=tempfile.mkdtemp())
    >>> len(result.trials), result.best.schedule in ("step", "exponential",
    ...                                               "inverse_time")
    (2, True)

    Then train the winner for real: `model = build_model(result.best)`,
    `model.fit(..., callbacks=result.best.callbacks())`: with the same
    data, `epochs` and `batch_size` this is the winning trial's training
    (after `keras.utils.set_random_seed(result.best_trial["seed"])`, the
    very same run), and with another seed it scores within the trials'
    seed-to-seed spread (docs/search.md).

    Args:
        build_model: `build_model(config) -> compiled keras.Model`, with
            `config` a `HyperparameterConfig`: use `config.optimizer()` (or
            any optimizer with a float learning rate), `config.regularizer()`
            and `config.dropout`.
        x, y: training data, as for `fit`.
        validation_data: `(x_val, y_val)` (or a dataset) that scores trials.
        max_trials: trials in all, both stages.
        epochs: training epochs per trial (of the fine stage).
        batch_size: as for `fit`.
        search_space: a `SearchSpace`, or a dict of knob ranges that
            override the defaults (see `SearchSpace`), e.g.
            `{"learning_rate": (1e-3, 1e-1), "dropout": None}`.
        objective: a metric of the validation logs ("val_accuracy",
            "val_loss", ...) or a `keras_tuner.Objective`.
        coarse_fraction: the share of `max_trials` run in the coarse stage;
            1.0 skips the fine stage.
        coarse_epochs: epochs per coarse trial (default `epochs`). With
            fewer, the best configuration is picked from the fine stage only,
            where trials train for the full `epochs`.
        zoom: the width of the fine ranges, as a fraction of the coarse.
        edge_fraction: a best value in the outer `edge_fraction` of its
            range triggers a warning.
        callbacks: more callbacks for every trial (they must be
            deep-copyable, as keras-tuner copies them).
        log_dir: if set, TensorBoard HParams records: one run folder per
            trial (`<log_dir>/<stage>-<trial>`) with its values and metrics.
            When `log_dir` already holds another search, this one writes to
            the first free `<log_dir>/search-<n>` (with a `UserWarning`;
            `SearchResult.log_dir` says where), so two searches never mix;
            a resumed search writes where it did before.
        directory: keras-tuner's folder (default: a new temporary one). A
            search with the same `directory` resumes where it stopped.
            Required in keras-tuner's distributed mode (`KERASTUNER_TUNER_ID`
            set), where every process runs this same call: the chief serves
            the coarse, then the fine oracle and returns every worker's
            trials; the workers train (see `tuning.distributed` and
            docs/search.md, "Scaling the search out").
        overwrite: start afresh in `directory` instead of resuming.
        seed: seeds the sampling and each trial: trial `i` of stage `s`
            runs `keras.utils.set_random_seed(...)` with its row's `seed`
            (initial weights, dropout, batch order), so a trial can be
            trained again exactly.
        verbose: 0 silent, 1 one line per trial and the summary.

    Returns:
        A `SearchResult`; also warns (`UserWarning`) for each best value at
        the edge of its range, and when the best trial's last epoch scored
        more than 2% below its best epoch (training it again would not
        reproduce its score).

    Reference: J. Bergstra and Y. Bengio, "Random Search for Hyper-Parameter
    Optimization", JMLR 2012; CS231n, "Neural Networks Part 3: Learning and
    Evaluation" (hyperparameter optimization).
    """
    if not callable(build_model):
        raise TypeError(
            "`build_model` must be a function config -> compiled keras.Model. "
            f"Received: build_model={build_model!r}"
        )
    if validation_data is None:
        raise ValueError(
            "`validation_data` is required: trials are ranked on held-out "
            "data, never on the training loss. Received: validation_data=None"
        )
    max_trials = validation.check_int("max_trials", max_trials, low=1)
    epochs = validation.check_int("epochs", epochs, low=1)
    batch_size = validation.check_int("batch_size", batch_size, low=1,
                                      allow_none=True)
    coarse_fraction = validation.check_real(
        "coarse_fraction", coarse_fraction, low=0.0, high=1.0, low_open=True
    )
    coarse_epochs = validation.check_int("coarse_epochs", coarse_epochs, low=1,
                                         allow_none=True) or epochs
    validation.check_real("zoom", zoom, low=0.0, high=1.0, low_open=True)
    validation.check_real("edge_fraction", edge_fraction, low=0.0, high=0.5,
                          low_open=True)
    validation.check_int("seed", seed, low=0, allow_none=True)
    verbose = validation.check_int("verbose", verbose, low=0)
    if not isinstance(objective, (str, keras_tuner.Objective)) or not objective:
        raise TypeError(
            "`objective` must be a metric name or a keras_tuner.Objective. "
            f"Received: objective={objective!r}"
        )
    if callbacks is not None and (
        not isinstance(callbacks, (list, tuple))
        or not all(isinstance(c, keras.callbacks.Callback) for c in callbacks)
    ):
        raise TypeError(
            "`callbacks` must be a list of keras.callbacks.Callback or None. "
            f"Received: callbacks={callbacks!r}"
        )
    log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
    directory = validation.check_path("directory", directory, allow_none=True)
    overwrite = validation.check_bool("overwrite", overwrite)
    space = _make_space(search_space, epochs)
    if space.is_empty:
        raise ValueError(
            "The search space is empty: every knob is fixed or left out and "
            "only one schedule is allowed, so all trials would be the same. "
            f"Give at least one knob a (low, high) range. Received: {space!r}"
        )
    objective_name = getattr(objective, "name", objective)
    model_check.check_model(build_model, space, objective_name)

    role = distributed.role()
    if role is not None and directory is None:
        raise ValueError(
            "`directory` is required in keras-tuner's distributed mode "
            "(KERASTUNER_TUNER_ID is set): the chief keeps the oracles there "
            "and the workers their checkpoints, and every process must name "
            "the same (shared) folder. Received: directory=None"
        )
    plan = _plan(max_trials, coarse_fraction, coarse_epochs, epochs)
    directory = directory or tempfile.mkdtemp(prefix="keras_trainopt_search_")
    log_folder = None
    if log_dir is not None and role != "worker":
        log_folder = search_log.claim_folder(log_dir, directory, overwrite)
        if os.path.normpath(log_folder) != os.path.normpath(log_dir):
            warnings.warn(
                f"`log_dir` {log_dir!r} already holds another search's HParams "
                f"records; this search writes to {log_folder!r} so that the "
                "two never mix (`SearchResult.log_dir`).",
                UserWarning, stacklevel=2,
            )
    log = SearchLog(log_folder, verbose)
    fit_kwargs = dict(validation_data=validation_data, batch_size=batch_size,
                      callbacks=list(callbacks or []), verbose=0)
    new_tuner = functools.partial(
        _new_tuner, build_model=build_model, seed=seed, objective=objective,
        directory=directory, overwrite=overwrite and role != "worker",
        on_trial_end=log.trial_ended,
    )
    stages = _Stages(plan, space, zoom, new_tuner, role, log, log_dir)
    tuners, stage_spaces, rows, direction = stages.run((x, y), fit_kwargs)

    eligible = {stage for stage, _, stage_epochs in plan
                if stage_epochs == epochs} or {"coarse"}
    best = _best([row for row in rows if row["stage"] in eligible], direction)
    if best is None and role != "worker":
        statuses = [row["status"] for row in rows]
        raise RuntimeError(
            "No trial produced a usable score: every trial diverged or "
            f"failed ({statuses.count('diverged')} diverged, "
            f"{statuses.count('failed')} failed). If the loss diverged, lower "
            "the learning-rate range; the failures' messages are in "
            f"{directory!r}."
        )
    edge = [] if best is None else space.edge_warnings(best, edge_fraction)
    edge += _unsettled(best, objective_name, direction)
    if role != "worker":
        for sentence in edge:
            warnings.warn(sentence, UserWarning, stacklevel=2)
        log.write_experiment(space, metrics=stages.metrics)
    result = SearchResult(
        best=None if best is None else row_config(best),
        best_score=None if best is None else best["score"],
        objective=objective_name,
        direction=direction,
        trials=rows,
        warnings=edge,
        space=space,
        fine_space=stage_spaces.get("fine"),
        directory=directory,
        tuners=tuners,
        log_dir=log.log_dir,
        role=role,
        best_trial=best,
    )
    if verbose and best is not None:
        io_utils.print_msg(f"\nBest {objective_name}: "
                           f"{result.best_score:.4g} with {result.best!r}")
        io_utils.print_msg(result.table(max_rows=10))
        for sentence in edge:
            io_utils.print_msg(f"Warning: {sentence}")
    return result


def _plan(max_trials, coarse_fraction, coarse_epochs, epochs):
    """`[(stage, trials, epochs per trial)]`: coarse, then fine if any left."""
    coarse_trials = max(1, min(max_trials, round(max_trials * coarse_fraction)))
    plan = [("coarse", coarse_trials, coarse_epochs)]
    if max_trials > coarse_trials:
        plan.append(("fine", max_trials - coarse_trials, epochs))
    return plan


def _new_tuner(stage, index, trials, space, *, build_model, seed,
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

    >>> from keras_trainopt.tuning.hyperparameter_search import oracle_seed
    >>> oracle_seed(0, 0), oracle_seed(0, 1), oracle_seed(1, 0)
    (1, 1000001, 2000001)
    """
    return 1 + (2 * seed + index) * _SEED_SPACING


class _Stages:
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
                self.metrics = _metric_names(trials_done, self.metrics)
            rows += stage_rows
            best = _best(stage_rows, direction)
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


def _metric_names(trials, known):
    """The metric names of `trials`, after those `known`, in order."""
    names = list(known or [])
    for trial in trials:
        names += [name for name in trial.metrics.metrics if name not in names]
    return names


def knob_values(row):
    """The configuration's knobs of a row (what narrowing needs), for JSON."""
    return dict(row_config(row))


def _make_space(search_space, epochs):
    """The `SearchSpace` of the `search_space` argument."""
    if search_space is None:
        return SearchSpace(epochs)
    if isinstance(search_space, SearchSpace):
        return search_space
    if isinstance(search_space, dict):
        try:
            return SearchSpace(epochs, **search_space)
        except (TypeError, ValueError) as error:  # name the argument given
            raise type(error)(f"`search_space`: {error}") from None
    raise TypeError(
        "`search_space` must be a SearchSpace, a dict of knob ranges or None. "
        f"Received: search_space={search_space!r}"
    )


def _unsettled(best, objective_name, direction, tolerance=0.02):
    """A sentence when the best trial's last epoch fell far below its best.

    Why: trials are scored by their best epoch, and training the winner
    again (`build_model(result.best)`, `fit` with `result.best.callbacks()`)
    ends at its last epoch. A winner whose curve still swung at the end
    (a rate near the edge of stability, too little decay) scores anywhere
    between the two when trained again, and a later seed can land at the
    low end. Returns `[]` or `[sentence]`.

    Args:
        best: the best row (or `None`).
        objective_name, direction: the objective.
        tolerance: the fall, relative to `|score|` (absolute below 1),
            beyond which it is worth a warning.
    """
    if best is None or best.get("final_score") is None:
        return []
    score, final = best["score"], best["final_score"]
    if not math.isfinite(final):
        return []
    fall = score - final if direction == "max" else final - score
    if fall <= tolerance * max(1.0, abs(score)):
        return []
    return [
        f"the best trial ({best['stage']} {best['trial']}) scored "
        f"{objective_name}={score:.4g} at its best epoch ({best['best_epoch']})"
        f" but {final:.4g} at its last: it had not settled, so training it "
        "again and reading the last epoch can give anything in between; "
        "compare the trials' last epochs (`final_score`), lower the "
        "learning-rate range, or keep the best epoch's weights "
        "(`result.best_model()`)"
    ]


def _best(rows, direction):
    """The row with the best finite score, or `None` if no row has one."""
    usable = [row for row in rows
              if row["score"] is not None and math.isfinite(row["score"])]
    if not usable:
        return None
    pick = max if direction == "max" else min
    return pick(usable, key=lambda row: row["score"])
