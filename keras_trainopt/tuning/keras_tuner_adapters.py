"""The keras-tuner side of the search: a HyperModel, a Tuner, trials as rows.

keras-tuner samples, trains, checkpoints and keeps the trials; these
subclasses plug the search into it. `SpaceHyperModel` turns a sampled
`hp` into a `HyperparameterConfig` and fits with the config's decay;
`SeededTuner` seeds each trial, marks diverged trials and hands each
finished trial, as a row of the trials table, to a callback.
"""

import keras
import keras_tuner

from keras_trainopt._internal import optimizers
from keras_trainopt.tuning import divergence
from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig

# A trial metric: the objective at the trial's last epoch (a constant series,
# so that keras-tuner, which keeps each metric's value at the best epoch,
# keeps it, also across a resume).
FINAL = "final_objective"


def record_final(history, objective):
    """Adds the `FINAL` series: the objective's value at the last epoch.

    Why: a trial is scored by its best epoch, while training the winner
    again and reading its last epoch gives the last epoch's value; a winner
    whose last epoch fell far below its best does not reproduce its score.

    Args:
        history: a `keras.callbacks.History` of one trial's fit, after
            `divergence.record_divergence`.
        objective: a `keras_tuner.Objective`.
    """
    values = history.history.get(objective.name) or []
    if values:
        history.history[FINAL] = [float(values[-1])] * len(values)


def finished_trials(oracle):
    """The oracle's finished trials in the order they ran.

    Args:
        oracle: a keras-tuner `Oracle`.
    """
    return sorted(
        (trial for trial in oracle.trials.values()
         if trial.status not in ("RUNNING", "IDLE")),
        key=lambda trial: int(trial.trial_id),
    )


def trial_row(stage, trial, space, seed=None):
    """One line of the trials table: stage, id, score, status, seed, knobs.

    Args:
        stage: "coarse" or "fine".
        trial: a finished keras-tuner `Trial`.
        space: the `SearchSpace` the trial was sampled from.
        seed: the seed the trial ran with (`keras.utils.set_random_seed`),
            or `None` when unseeded.
    """
    values = space.values(trial.hyperparameters.values)
    status = divergence.status(trial)
    row = {"stage": stage, "trial": trial.trial_id,
           "score": None if trial.score is None else float(trial.score),
           "best_epoch": trial.best_step, "status": status, "seed": seed,
           "final_score": (float(trial.metrics.get_last_value(FINAL))
                           if trial.metrics.exists(FINAL) else None),
           **values}
    if status == "failed":
        lines = (trial.message or "").strip().splitlines()
        row["message"] = lines[-1] if lines else ""
    return row


class SpaceHyperModel(keras_tuner.HyperModel):
    """Samples the space, calls `build_model`, fits with the config's decay.

    Args:
        build_model: `build_model(config) -> compiled keras.Model`.
        space: the `SearchSpace` to sample.
        markers: `{name: value}` declared as fixed hyperparameters before
            the knobs (a distributed search's stage markers); `None` for none.
    """

    def __init__(self, build_model, space, markers=None):
        super().__init__()
        self.build_model = build_model
        self.space = space
        self.markers = dict(markers or {})

    def declare_hyperparameters(self, hp):
        for name, value in self.markers.items():
            hp.Fixed(name, value)

    def build(self, hp):
        return self.build_model(HyperparameterConfig(self.space.declare(hp)))

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        config = HyperparameterConfig(self.space.values(hp.values))
        optimizers.set_learning_rate(model.optimizer, config.learning_rate)
        callbacks = [*config.callbacks(), *(callbacks or []),
                     keras.callbacks.TerminateOnNaN()]
        return model.fit(*args, callbacks=callbacks, **kwargs)


class SeededTuner(keras_tuner.RandomSearch):
    """`RandomSearch` that seeds each trial and reports it as it ends.

    Args:
        stage: the stage's name, for the rows.
        trial_seed: trial `i` runs `keras.utils.set_random_seed(trial_seed +
            i)`; `None` leaves the seed alone.
        on_trial_end: `on_trial_end(row, history)` with the trial's row
            (`trial_row`) and its last fit's `History.history`.
        **kwargs: for `keras_tuner.RandomSearch`.
    """

    def __init__(self, *, stage, trial_seed, on_trial_end, **kwargs):
        super().__init__(**kwargs)
        self._stage = stage
        self._trial_seed = trial_seed
        self._on_trial_end = on_trial_end
        self._histories = {}

    def seed_of(self, trial_id):
        """The seed trial `trial_id` runs with, or `None` when unseeded."""
        if self._trial_seed is None:
            return None
        return self._trial_seed + int(trial_id)

    def run_trial(self, trial, *args, **kwargs):
        seed = self.seed_of(trial.trial_id)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        histories = super().run_trial(trial, *args, **kwargs)
        for history in histories:
            # Kept by the oracle (and so across a resume) as a trial metric.
            divergence.record_divergence(history, self.oracle.objective)
            record_final(history, self.oracle.objective)
        self._histories[trial.trial_id] = histories[-1].history
        return histories

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        row = trial_row(self._stage, self.oracle.get_trial(trial.trial_id),
                        self.hypermodel.space, self.seed_of(trial.trial_id))
        self._on_trial_end(row, self._histories.pop(trial.trial_id, {}))
