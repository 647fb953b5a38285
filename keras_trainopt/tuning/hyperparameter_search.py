"""Random search over learning rate, decay and regularization, coarse then fine.

The practice: search the initial learning rate and the regularization
strength on a log scale, by random search rather than grid search, first
coarse (wide ranges) then fine (narrow ranges around the best), and distrust a
best value that sits at the edge of its range. keras-tuner does the sampling,
the bookkeeping and the per-trial checkpoints; this module chooses the space,
runs the two stages, applies each trial's decay schedule, and reports.
"""

import dataclasses
import math
import tempfile
import warnings

import keras
import keras_tuner
import numpy as np

from keras_trainopt._internal import optimizers
from keras_trainopt._internal import validation
from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
from keras_trainopt.tuning.search_space import knob_table
from keras_trainopt.tuning.search_space import SearchSpace

_STAGES = ("coarse", "fine")
_DIVERGED = "diverged"  # a trial metric: 1.0 when the loss went non-finite


@dataclasses.dataclass
class SearchResult:
    """What `search_hyperparameters` found: the best configuration and every trial.

    >>> from keras_trainopt.tuning import HyperparameterConfig, SearchResult
    >>> best = HyperparameterConfig({"learning_rate": 0.1,
    ...                              "schedule": "constant"})
    >>> result = SearchResult(best=best, best_score=0.97,
    ...     objective="val_accuracy", direction="max",
    ...     trials=[{"stage": "coarse", "trial": "00", "score": 0.97,
    ...              "status": "completed", "learning_rate": 0.1,
    ...              "schedule": "constant"}])
    >>> print(result.table())  # doctest: +NORMALIZE_WHITESPACE
    | rank | stage | trial | val_accuracy | learning_rate | schedule
      | l2 | dropout | status |
    |---:|---|---|---:|---:|---|---:|---:|---|
    | 1 | coarse | 00 | 0.97 | 0.1 | constant | - | - | completed |

    Args:
        best: the best configuration (`HyperparameterConfig`): call
            `best.optimizer()`, `best.callbacks()`, `best.regularizer()`.
        best_score: its objective value (the best epoch of its trial).
        objective: the name of the objective, e.g. "val_accuracy".
        direction: "max" or "min".
        trials: one dict per trial in the order run: `stage`, `trial`,
            `score`, `best_epoch`, `status` ("completed", "diverged" or
            "failed") and every knob's value.
        warnings: sentences about best values at the edge of their range.
        space: the `SearchSpace` of the coarse stage.
        fine_space: the `SearchSpace` of the fine stage (`None` if skipped).
        directory: where keras-tuner keeps its trials and checkpoints.
        tuners: `{stage: keras_tuner.RandomSearch}`, for anything more.

    Reference: CS231n, "Neural Networks Part 3: Learning and Evaluation"
    (hyperparameter optimization: coarse to fine, beware of best values
    at the border).
    """

    best: HyperparameterConfig
    best_score: float
    objective: str
    direction: str
    trials: list
    warnings: list = dataclasses.field(default_factory=list)
    space: SearchSpace = None
    fine_space: SearchSpace = None
    directory: str = None
    tuners: dict = dataclasses.field(default_factory=dict, repr=False)

    def ranked(self):
        """The trials, best first; diverged and failed trials last."""
        sign = -1.0 if self.direction == "max" else 1.0

        def key(trial):
            score = trial.get("score")
            usable = score is not None and math.isfinite(score)
            return (not usable, sign * score if usable else 0.0)

        return sorted(self.trials, key=key)

    def table(self, max_rows=None):
        """All trials as a Markdown table, best first."""
        knobs = ["learning_rate", "schedule", "l2", "dropout"]
        header = ["rank", "stage", "trial", self.objective, *knobs, "status"]
        lines = [
            "| " + " | ".join(header) + " |",
            "|---:|---|---|---:|" + "---:|---|---:|---:|---|",
        ]
        for rank, trial in enumerate(self.ranked()[:max_rows], start=1):
            config = HyperparameterConfig(trial)
            cells = [
                str(rank), trial["stage"], str(trial["trial"]),
                _format(trial.get("score")),
                _format(trial.get("learning_rate")),
                config.describe_schedule(),
                _format(trial.get("l2")),
                _format(trial.get("dropout")),
                trial.get("status", ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def best_model(self):
        """The best trial's model, with the weights of its best epoch."""
        trial = self.ranked()[0]
        tuner = self.tuners[trial["stage"]]
        with warnings.catch_warnings():
            # keras-tuner checkpoints mid-fit and loads into a fresh model,
            # whose optimizer is not built yet: only the weights matter here.
            warnings.filterwarnings("ignore", "Skipping variable loading for "
                                    "optimizer")
            return tuner.load_model(tuner.oracle.get_trial(trial["trial"]))


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
    `model.fit(..., callbacks=result.best.callbacks())`.

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
        directory: keras-tuner's folder (default: a new temporary one). A
            search with the same `directory` resumes where it stopped.
        overwrite: start afresh in `directory` instead of resuming.
        seed: seeds the sampling and each trial's initial weights.
        verbose: 0 silent, 1 one line per trial and the summary.

    Returns:
        A `SearchResult`; also warns (`UserWarning`) for each best value at
        the edge of its range.

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
    _check_model(build_model, space, objective_name)

    coarse_trials = max(1, min(max_trials, round(max_trials * coarse_fraction)))
    plan = [("coarse", coarse_trials, coarse_epochs)]
    if max_trials > coarse_trials:
        plan.append(("fine", max_trials - coarse_trials, epochs))
    directory = directory or tempfile.mkdtemp(prefix="keras_trainopt_search_")
    run = _Run(log_dir, verbose)
    fit_kwargs = dict(validation_data=validation_data, batch_size=batch_size,
                      callbacks=list(callbacks or []), verbose=0)

    tuners, stage_spaces, rows, best = {}, {}, [], None
    stage_space = space
    for index, (stage, trials, stage_epochs) in enumerate(plan):
        if stage == "fine":
            stage_space = space.narrow(best, zoom)
        stage_spaces[stage] = stage_space
        tuner = _Tuner(
            hypermodel=_HyperModel(build_model, stage_space),
            objective=objective,
            max_trials=trials,
            # keras-tuner reads a seed of 0 as "no seed": keep it positive
            seed=None if seed is None else 1 + 2 * seed + index,
            directory=directory,
            project_name=stage,
            overwrite=overwrite,
            max_consecutive_failed_trials=trials,
            run=run,
            stage=stage,
            trial_seed=None if seed is None else seed * 1000 + index * 100,
        )
        tuners[stage] = tuner
        tuner.search(x, y, epochs=stage_epochs, **fit_kwargs)
        # Rows come from the oracle, so a resumed search lists every trial.
        stage_rows = [_row(stage, trial, stage_space)
                      for trial in _trials(tuner.oracle)]
        rows += stage_rows
        direction = tuner.oracle.objective.direction
        best = _best(stage_rows, direction)
        if best is None:
            break

    eligible = {stage for stage, _, stage_epochs in plan
                if stage_epochs == epochs} or {"coarse"}
    best = _best([row for row in rows if row["stage"] in eligible], direction)
    if best is None:
        statuses = [row["status"] for row in rows]
        raise RuntimeError(
            "No trial produced a usable score: every trial diverged or "
            f"failed ({statuses.count('diverged')} diverged, "
            f"{statuses.count('failed')} failed). If the loss diverged, lower "
            "the learning-rate range; the failures' messages are in "
            f"{directory!r}."
        )
    edge = space.edge_warnings(best, edge_fraction)
    for sentence in edge:
        warnings.warn(sentence, UserWarning, stacklevel=2)
    run.write_experiment(space, objective_name)
    result = SearchResult(
        best=_config(best),
        best_score=best["score"],
        objective=objective_name,
        direction=direction,
        trials=rows,
        warnings=edge,
        space=space,
        fine_space=stage_spaces.get("fine"),
        directory=directory,
        tuners=tuners,
    )
    if verbose:
        print(f"\nBest {objective_name}: {result.best_score:.4g} with "
              f"{result.best!r}")
        print(result.table(max_rows=10))
        for sentence in edge:
            print("Warning:", sentence)
    return result


def _make_space(search_space, epochs):
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


def _metric_names(model):
    """The metric names `fit` will log, or `None` when they cannot be told."""
    config = model.get_compile_config() or {}
    metrics = config.get("metrics") or []
    if not isinstance(metrics, (list, tuple)):
        return None
    names = {"loss"}
    for metric in metrics:
        if isinstance(metric, str):
            names.add(metric)
        elif isinstance(metric, dict) and "config" in metric:
            names.add(metric["config"].get("name"))
        else:
            return None
    return names


def _check_model(build_model, space, objective):
    """Builds one model before the search, to fail early and clearly."""
    middle = {"schedule": space.schedules[0]}
    for name, (low, high) in space.ranges.items():
        scale = knob_table()[name][0].scale
        middle[name] = (math.sqrt(low * high) if scale == "log"
                        else low if scale == "int" else (low + high) / 2)
    values = space.values(middle)
    model = build_model(HyperparameterConfig(values))
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`build_model` must return a keras.Model. Received: "
            f"{type(model).__name__} from build_model={build_model!r}"
        )
    if not model.compiled:
        raise ValueError(
            "`build_model` must return a compiled model: call "
            "`model.compile(config.optimizer(), loss=..., metrics=[...])` "
            "inside it."
        )
    optimizers.check_settable_learning_rate(model.optimizer,
                                            "search_hyperparameters")
    names = _metric_names(model)
    if names is not None and isinstance(objective, str):
        base = objective.removeprefix("val_")
        if base not in names:
            raise ValueError(
                f"`objective` must be a metric the model logs; compile the "
                f"model with it, e.g. `metrics=[{base!r}]`. Metrics compiled: "
                f"{sorted(names)}. Received: objective={objective!r}"
            )
    keras.backend.clear_session()


def _best(rows, direction):
    usable = [row for row in rows
              if row["score"] is not None and math.isfinite(row["score"])]
    if not usable:
        return None
    pick = max if direction == "max" else min
    return pick(usable, key=lambda row: row["score"])


def _config(row):
    """The `HyperparameterConfig` of a row of the trials table."""
    return HyperparameterConfig({name: row[name] for name in
                                 ("schedule", *knob_table())})


def _trials(oracle):
    """The oracle's finished trials in the order they ran."""
    return sorted(
        (trial for trial in oracle.trials.values()
         if trial.status not in ("RUNNING", "IDLE")),
        key=lambda trial: int(trial.trial_id),
    )


def _row(stage, trial, space):
    """One line of the trials table."""
    values = space.values(trial.hyperparameters.values)
    if trial.status != "COMPLETED":
        status = "failed"
    elif trial.metrics.exists(_DIVERGED) and trial.metrics.get_last_value(
        _DIVERGED
    ):
        status = "diverged"
    else:
        status = "completed"
    row = {"stage": stage, "trial": trial.trial_id,
           "score": None if trial.score is None else float(trial.score),
           "best_epoch": trial.best_step, "status": status, **values}
    if status == "failed":
        lines = (trial.message or "").strip().splitlines()
        row["message"] = lines[-1] if lines else ""
    return row


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _HyperModel(keras_tuner.HyperModel):
    """Samples the space, calls `build_model`, fits with the config's decay."""

    def __init__(self, build_model, space):
        super().__init__()
        self.build_model = build_model
        self.space = space

    def build(self, hp):
        return self.build_model(HyperparameterConfig(self.space.declare(hp)))

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        config = HyperparameterConfig(self.space.values(hp.values))
        optimizers.set_learning_rate(model.optimizer, config.learning_rate)
        callbacks = [*config.callbacks(), *(callbacks or []),
                     keras.callbacks.TerminateOnNaN()]
        return model.fit(*args, callbacks=callbacks, **kwargs)


class _Tuner(keras_tuner.RandomSearch):
    """`RandomSearch` that seeds each trial and records it as it ends."""

    def __init__(self, *, run, stage, trial_seed, **kwargs):
        super().__init__(**kwargs)
        self._run = run
        self._stage = stage
        self._trial_seed = trial_seed

    def run_trial(self, trial, *args, **kwargs):
        if self._trial_seed is not None:
            keras.utils.set_random_seed(
                self._trial_seed + int(trial.trial_id)
            )
        histories = super().run_trial(trial, *args, **kwargs)
        for history in histories:
            diverged = _mark_divergence(history, self.oracle.objective)
            # Kept by the oracle (and so across a resume) as a trial metric.
            history.history[_DIVERGED] = [float(diverged)] * len(
                history.history.get("loss", [])
            )
        self._run.histories[trial.trial_id] = histories[-1].history
        return histories

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        row = _row(self._stage, self.oracle.get_trial(trial.trial_id),
                   self.hypermodel.space)
        self._run.trial_ended(row, self._run.histories.pop(trial.trial_id, {}))


def _mark_divergence(history, objective):
    """Sets the objective to its worst value from the first non-finite loss on.

    Returns whether the loss diverged. A NaN loss stops the trial
    (`TerminateOnNaN`), and a NaN model still scores some accuracy, so the
    epochs from there on must not count.
    """
    losses = np.asarray(history.history.get("loss", []), dtype="float64")
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size or objective.name not in history.history:
        return bool(bad.size)
    worst = -math.inf if objective.direction == "max" else math.inf
    values = history.history[objective.name]
    for epoch in range(bad[0], len(values)):
        values[epoch] = worst
    return True


class _Run:
    """Reports trials as they end: a line to the console, HParams to TensorBoard."""

    def __init__(self, log_dir, verbose):
        self.log_dir = log_dir
        self.verbose = verbose
        self.histories = {}
        self.metrics = []

    def trial_ended(self, row, history):
        if self.verbose:
            print(f"{row['stage']} trial {row['trial']}: {row['status']}, "
                  f"score {_format(row['score'])}, {_config(row)!r}")
        self._write_trial(row["stage"], row["trial"], row, history)

    def _write_trial(self, stage, trial_id, row, history):
        if self.log_dir is None:
            return
        from keras_trainopt.reporting import tensorboard

        writer = tensorboard.open_run(self.log_dir, f"{stage}-{trial_id}")
        if writer is None:
            return
        try:
            values = {k: row[k] for k in ("stage", *knob_table(), "schedule")}
            writer.hparams(values, trial_id=f"{stage}-{trial_id}")
            for tag, series in history.items():
                if tag == _DIVERGED:
                    continue
                finite = [(step, v) for step, v in enumerate(series)
                          if v is not None and math.isfinite(v)]
                writer.scalars(tag, [s for s, _ in finite],
                               [v for _, v in finite])
                if tag not in self.metrics:
                    self.metrics.append(tag)
            if row["score"] is not None and math.isfinite(row["score"]):
                writer.scalar("score", row["score"], 0)
        finally:
            tensorboard.close_run(writer)

    def write_experiment(self, space, objective):
        if self.log_dir is None:
            return
        from tensorboard.plugins.hparams import summary_v2 as hparams

        from keras_trainopt.reporting import tensorboard

        writer = tensorboard.open_run(self.log_dir, ".")
        if writer is None:
            return
        try:
            domains = {"stage": hparams.Discrete(list(_STAGES))}
            domains.update(space.hparams_domains())
            writer.hparams_config(domains, ["score", *self.metrics])
        finally:
            tensorboard.close_run(writer)
