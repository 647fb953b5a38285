"""`SearchResult`: what a search found, its trials ranked and as a table."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

# keras is loaded already: `HyperparameterConfig` imports the callbacks
import keras

from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
from keras_trainopt.tuning.search_space import SearchSpace
from keras_trainopt.tuning.search_space import knob_table

if TYPE_CHECKING:  # keras-tuner is imported only where a search runs
    import keras_tuner


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
            "failed"), `seed` (what it ran `keras.utils.set_random_seed`
            with; `None` unseeded), `final_score` (the objective at its last
            epoch) and every knob's value.
        warnings: sentences about best values at the edge of their range,
            and about a best trial whose last epoch fell far below its best.
        space: the `SearchSpace` of the coarse stage.
        fine_space: the `SearchSpace` of the fine stage (`None` if skipped).
        directory: where keras-tuner keeps its trials and checkpoints.
        tuners: `{stage: keras_tuner.RandomSearch}`, for anything more.
        log_dir: the folder the HParams records went to: `log_dir` itself,
            or `<log_dir>/search-<n>` when `log_dir` held another search
            (`None` without `log_dir`).
        best_trial: the row of `trials` that `best` comes from; its
            "seed" retrains that very trial
            (`keras.utils.set_random_seed(best_trial["seed"])`).
        role: `None` for a search in one process; in keras-tuner's
            distributed mode "chief" (its `trials` are every worker's) or
            "worker" (its `trials` are only those it trained, and `best` the
            best of them, `None` if none).

    Reference: CS231n, "Neural Networks Part 3: Learning and Evaluation"
    (hyperparameter optimization: coarse to fine, beware of best values
    at the border).
    """

    best: HyperparameterConfig | None
    best_score: float | None
    objective: str
    direction: str
    trials: list[dict[str, Any]]
    warnings: list[str] = dataclasses.field(default_factory=list)
    space: SearchSpace | None = None
    fine_space: SearchSpace | None = None
    directory: str | None = None
    tuners: dict[str, keras_tuner.RandomSearch] = dataclasses.field(
        default_factory=dict, repr=False
    )
    log_dir: str | None = None
    role: str | None = None
    best_trial: dict[str, Any] | None = None

    def ranked(self) -> list[dict[str, Any]]:
        """The trials, best first; diverged and failed trials last."""
        sign = -1.0 if self.direction == "max" else 1.0

        def key(trial: Mapping[str, Any]) -> tuple[bool, float]:
            score = trial.get("score")
            usable = score is not None and math.isfinite(score)
            return (not usable, sign * score if usable else 0.0)

        return sorted(self.trials, key=key)

    def table(self, max_rows: int | None = None) -> str:
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
                format_value(trial.get("score")),
                format_value(trial.get("learning_rate")),
                config.describe_schedule(),
                format_value(trial.get("l2")),
                format_value(trial.get("dropout")),
                trial.get("status", ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def best_model(self) -> keras.Model:
        """The best trial's model, with the weights of its best epoch."""
        trial = self.ranked()[0]
        tuner = self.tuners[trial["stage"]]
        with warnings.catch_warnings():
            # keras-tuner checkpoints mid-fit and loads into a fresh model,
            # whose optimizer is not built yet: only the weights matter here.
            warnings.filterwarnings("ignore", "Skipping variable loading for "
                                    "optimizer")
            return tuner.load_model(tuner.oracle.get_trial(trial["trial"]))


def row_config(row: Mapping[str, Any]) -> HyperparameterConfig:
    """The `HyperparameterConfig` of a row of the trials table.

    Args:
        row: one of `SearchResult.trials`.
    """
    return HyperparameterConfig({name: row[name] for name in
                                 ("schedule", *knob_table())})


def format_value(value: object) -> str:
    """A table cell: "-" for `None`, 4 significant digits for a float."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def unsettled_warnings(
    best: Mapping[str, Any] | None,
    objective_name: str,
    direction: str,
    tolerance: float = 0.02,
) -> list[str]:
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
