"""Random search over learning rate, decay and regularization, coarse then fine.

The practice: search the initial learning rate and the regularization
strength on a log scale, by random search rather than grid search, first
coarse (wide ranges) then fine (narrow ranges around the best), and distrust a
best value that sits at the edge of its range. keras-tuner does the sampling,
the bookkeeping and the per-trial checkpoints; this module chooses the space,
runs the two stages, applies each trial's decay schedule, and reports.
"""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import keras

try:
    import keras_tuner
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "search_hyperparameters needs keras-tuner: pip install "
        f"'keras-trainopt[tune]'. Importing it failed with: {error}"
    ) from error

from keras_trainopt._internal import batches as batch_data
from keras_trainopt._internal import console
from keras_trainopt._internal import validation
from keras_trainopt.tuning import distributed
from keras_trainopt.tuning import model_check
from keras_trainopt.tuning import search_log
from keras_trainopt.tuning import stages
from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
from keras_trainopt.tuning.search_log import SearchLog
from keras_trainopt.tuning.search_result import SearchResult
from keras_trainopt.tuning.search_result import row_config
from keras_trainopt.tuning.search_result import unsettled_warnings
from keras_trainopt.tuning.search_space import KnobSpec
from keras_trainopt.tuning.search_space import SearchSpace

# Training and validation data, as `model.fit` takes it: NumPy arrays (or a
# list or dict of them), a `tf.data.Dataset`, a `keras.utils.PyDataset`, ...
# No static type covers them all, hence `Any`.
Data = Any


def search_hyperparameters(
    build_model: Callable[[HyperparameterConfig], keras.Model],
    x: Data,
    y: Data = None,
    validation_data: Data = None,
    max_trials: int = 20,
    epochs: int = 10,
    *,
    batch_size: int | None = 32,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    search_space: SearchSpace | dict[str, KnobSpec] | None = None,
    objective: str | keras_tuner.Objective = "val_accuracy",
    coarse_fraction: float = 0.5,
    coarse_epochs: int | None = None,
    zoom: float = 0.25,
    edge_fraction: float = 0.1,
    callbacks: (
        list[keras.callbacks.Callback] | tuple[keras.callbacks.Callback, ...] | None
    ) = None,
    log_dir: str | os.PathLike[str] | None = None,
    directory: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    seed: int | None = None,
    verbose: int = 1,
) -> SearchResult:
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
        steps_per_epoch, validation_steps: as for `fit`; needed for data
            that never ends (a `tf.data.Dataset` that repeats, a
            `PyDataset` without a length), where a trial would never end.
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
    steps_per_epoch = validation.check_int("steps_per_epoch", steps_per_epoch,
                                           low=1, allow_none=True)
    validation_steps = validation.check_int(
        "validation_steps", validation_steps, low=1, allow_none=True)
    batch_data.refuse_endless(x, "x", steps_per_epoch, "steps_per_epoch",
                              "the first trial")
    batch_data.refuse_endless(validation_data, "validation_data",
                              validation_steps, "validation_steps",
                              "the first trial")
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
    plan = stages.plan_stages(max_trials, coarse_fraction, coarse_epochs, epochs)
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
    fit_kwargs.update({name: value for name, value in (
        ("steps_per_epoch", steps_per_epoch),
        ("validation_steps", validation_steps)) if value is not None})
    new_tuner = functools.partial(
        stages.new_tuner, build_model=build_model, seed=seed, objective=objective,
        directory=directory, overwrite=overwrite and role != "worker",
        on_trial_end=log.trial_ended,
    )
    runner = stages.Stages(plan, space, zoom, new_tuner, role, log, log_dir)
    tuners, stage_spaces, rows, direction = runner.run((x, y), fit_kwargs)

    eligible = {stage for stage, _, stage_epochs in plan
                if stage_epochs == epochs} or {"coarse"}
    best = stages.best_row([row for row in rows if row["stage"] in eligible], direction)
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
    edge += unsettled_warnings(best, objective_name, direction)
    if role != "worker":
        for sentence in edge:
            warnings.warn(sentence, UserWarning, stacklevel=2)
        log.write_experiment(space, metrics=runner.metrics)
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
        console.print_msg(f"\nBest {objective_name}: "
                           f"{result.best_score:.4g} with {result.best!r}")
        console.print_msg(result.table(max_rows=10))
        for sentence in edge:
            console.print_msg(f"Warning: {sentence}")
    return result


def _make_space(search_space: object, epochs: int) -> SearchSpace:
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

