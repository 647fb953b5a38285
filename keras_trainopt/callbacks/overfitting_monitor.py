"""`OverfittingMonitor`: the train-versus-validation gap, and what it means."""

import math
import os
import warnings
from typing import Any

import keras

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import model_facts
from keras_trainopt._internal import running_fit
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.diagnostics import generalization
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard


def has_validation(logs):
    """Whether the epoch logs hold validation results (`val_*` keys)."""
    return any(key.startswith("val_") for key in logs)


def _no_validation(why, more=""):
    return ValueError(
        f"OverfittingMonitor needs validation data: {why}, so there is no "
        "train/validation gap to measure. Pass `validation_data` or "
        "`validation_split` to `fit`, or drop this callback (TrainingDoctor "
        f"skips the gap check without validation data).{more}"
    )


class OverfittingMonitor(callback_state.Restorable, keras.callbacks.Callback):
    """Tracks the gap between training and validation, and names the problem.

    The gap between training and validation accuracy tells how much capacity
    the model has relative to the data (cs231n): a large gap is overfitting
    (more regularization, more data, or stop earlier); no gap with poor
    training accuracy is underfitting (a bigger model). After each epoch this
    callback puts the gap into the epoch logs as `generalization_gap` (so
    `History` and Keras' TensorBoard record it), writes it to TensorBoard,
    and leaves a verdict in `diagnosis`, with the evidence and advice in
    `reason`. It can stop training once overfitting persists and put back the
    weights of the best validation epoch.

        gap = train - validation    (accuracy-like metrics)
        gap = validation - train    (loss-like metrics: loss, mse, ...)

    - `"underfitting"`: training is no better than chance, whatever the
      gap: the training loss is at least 0.9x the chance-level loss
      (ln(classes) for a classification cross-entropy, read off the model)
      or the training accuracy within 10% of the way from chance (1 /
      classes) to 1 (`diagnostics.generalization.at_chance`);
    - `"overfitting"`: `gap > overfitting_gap`; or, scale-free, from the
      epoch losses (`diagnostics.generalization.overfitting_trend`): the
      validation loss rose more than 10% above its minimum while the
      training loss fell more than 10% since, or the validation loss is 3x
      the training loss or more and the gap exceeds half of `overfitting_gap`;
    - `"underfitting"`: `|gap| <= underfitting_gap` and the training value is
      worse than `underfitting_value`;
    - `"good_fit"` otherwise.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import OverfittingMonitor
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(64, 20)), rng.integers(0, 2, 64)  # noise
        >>> model = keras.Sequential([keras.Input((20,)),
        ...                           keras.layers.Dense(256, activation="relu"),
        ...                           keras.layers.Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...               metrics=["accuracy"])
        >>> monitor = OverfittingMonitor(verbose=0)
        >>> history = model.fit(x, y, validation_split=0.5, epochs=60,
        ...                     callbacks=[monitor], verbose=0)
        >>> monitor.diagnosis
        'overfitting'

    Args:
        metric: the metric to compare; `val_<metric>` must be in the logs.
        log_dir: TensorBoard folder (`generalization_gap` goes to the run
            `monitors`, one point per epoch); `None` writes nothing.
        mode: `"auto"` (loss-like names are lower-is-better), `"max"` or
            `"min"`.
        overfitting_gap: the gap above which the model overfits (default 0.1,
            10 points of accuracy).
        underfitting_gap: the gap within which validation "tracks" training
            (default 0.05).
        underfitting_value: a training value worse than this is poor (default
            0.8 for higher-is-better metrics; `None`, no underfitting verdict,
            for lower-is-better ones unless given).
        patience: epochs in a row of overfitting before `stop_on_overfitting`
            acts (int >= 1).
        stop_on_overfitting: stop training after `patience` overfitting
            epochs.
        restore_best_weights: at the end of training, put back the weights of
            the epoch with the best validation value.
        verbose: 1 prints the verdict and advice at the end of training.

    Without validation data there is nothing to compare: `fit` then fails
    before its first step with an error that says so (`TrainingDoctor`
    skips its gap check instead, and says so). With `validation_freq` the
    gap is measured at the epochs `fit` validates and the others are
    skipped; a `validation_freq` that validates none of the `fit`'s epochs
    gets a warning at train begin. (Where the hooks are called outside
    Keras' `fit`, whose arguments say whether it validates, the first epoch
    that ends without validation before any validated one fails instead.)

    Attributes:
        diagnosis: `"good_fit"`, `"overfitting"`, `"underfitting"`, or
            `"insufficient_data"` before the first epoch ends.
        reason: the evidence and advice, in words.
        gaps: the gap of every epoch; best_epoch: the best validation epoch.
        train_losses, val_losses: the epoch losses (`loss`, `val_loss`).
        evidence: the rule that decided the verdict, as a phrase ("" when
            the gap alone did).

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    train/validation accuracy.
    """

    DIAGNOSES = ("insufficient_data", "good_fit", "overfitting", "underfitting")
    MODES = ("auto", "max", "min")

    def __init__(
        self,
        metric: str = "accuracy",
        *,
        log_dir: str | os.PathLike | None = None,
        mode: str = "auto",
        overfitting_gap: float = 0.1,
        underfitting_gap: float = 0.05,
        underfitting_value: float | str | None = "auto",
        patience: int = 1,
        stop_on_overfitting: bool = False,
        restore_best_weights: bool = False,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(metric, str) or not metric:
            raise TypeError(
                f"`metric` must be a metric name. Received: metric={metric!r}"
            )
        if metric.startswith("val_"):
            raise ValueError(
                "`metric` must be the training metric's name; its validation "
                f"twin is read as 'val_' + metric. Received: metric={metric!r}"
            )
        self.metric = metric
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        self.mode = validation.check_choice("mode", mode, self.MODES)
        self.lower_is_better = (
            generalization.lower_is_better(metric) if mode == "auto"
            else mode == "min"
        )
        self.overfitting_gap = validation.check_real(
            "overfitting_gap", overfitting_gap, low=0.0
        )
        self.underfitting_gap = validation.check_real(
            "underfitting_gap", underfitting_gap, low=0.0
        )
        if underfitting_value == "auto":
            underfitting_value = None if self.lower_is_better else 0.8
        self.underfitting_value = validation.check_real(
            "underfitting_value", underfitting_value, allow_none=True
        )
        self.patience = validation.check_int("patience", patience, low=1)
        self.stop_on_overfitting = validation.check_bool(
            "stop_on_overfitting", stop_on_overfitting
        )
        self.restore_best_weights = validation.check_bool(
            "restore_best_weights", restore_best_weights
        )
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.diagnosis = "insufficient_data"
        self.reason = "no epoch has ended yet"
        self.gaps = []
        self.train_losses, self.val_losses = [], []
        self.evidence = ""
        self.best_epoch = None
        self.best_value = None
        self._chance = {}
        self._overfit_run = 0
        self._best_weights = None
        self._writer = None
        self._validated = False
        # whether this fit validates, from its arguments (`running_fit`);
        # None where the hooks run outside Keras' `fit`
        self._fit_validates = None
        self._validation_freq = None
        # False in TrainingDoctor, which checks no gap without validation
        self._requires_validation = True

    def get_state(self) -> dict[str, Any]:
        """The per-epoch gaps, verdict and best epoch, for a restart."""
        return {
            "gaps": list(self.gaps),
            "train_losses": list(self.train_losses),
            "val_losses": list(self.val_losses),
            "evidence": self.evidence,
            "diagnosis": self.diagnosis,
            "reason": self.reason,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "overfit_run": self._overfit_run,
            "best_weights": self._best_weights,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.gaps = list(state.get("gaps", []))
        self.train_losses = list(state.get("train_losses", []))
        self.val_losses = list(state.get("val_losses", []))
        self.evidence = state.get("evidence", "")
        self.diagnosis = state.get("diagnosis", "insufficient_data")
        self.reason = state.get("reason", "")
        self.best_epoch = state.get("best_epoch")
        self.best_value = state.get("best_value")
        self._overfit_run = state.get("overfit_run", 0)
        self._best_weights = state.get("best_weights")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        running = running_fit.find(self.model)
        self._fit_validates = None if running is None else running.validates
        self._validation_freq = (
            None if running is None else running.validation_freq)
        if running is not None and self._requires_validation:
            self._check_validation(running)
        self._writer = tensorboard.open_run(self.log_dir, "monitors")
        self._validated = False
        facts = model_facts.describe(self.model)
        classes = facts["classes"]
        classification = facts["loss"] in (
            "sparse_categorical_crossentropy", "categorical_crossentropy",
            "binary_crossentropy")
        self._chance = {
            "loss": facts["chance_loss"],
            "accuracy": (
                None if not classification or not classes
                or self.lower_is_better or "acc" not in self.metric.lower()
                else 1.0 / max(classes, 2)
            ),
        }

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        logs = {} if logs is None else logs
        if not has_validation(logs) and (
                self._validated or self._fit_validates):
            return  # validation_freq: not this epoch
        train, held_out = self._values(logs, epoch)
        self._validated = True
        verdict = generalization.diagnose_fit(
            train, held_out,
            lower_better=self.lower_is_better,
            overfitting_gap=self.overfitting_gap,
            underfitting_gap=self.underfitting_gap,
            underfitting_value=self.underfitting_value,
        )
        gap = generalization.generalization_gap(
            train, held_out, self.lower_is_better
        )
        self.gaps.append(gap)
        verdict = self._read_trend(verdict, logs, train)
        # keras.callbacks.TensorBoard writes it as tags.EPOCH_GENERALIZATION_GAP
        logs[tags.GENERALIZATION_GAP] = gap
        if self._writer is not None:
            self._writer.scalar(tags.GENERALIZATION_GAP, gap, epoch)
            self._writer.flush()
        self.diagnosis = verdict.verdict
        self.reason = f"epoch {epoch + 1}: {verdict.reason}"
        self._track_best(epoch, held_out)
        self._overfit_run = (
            self._overfit_run + 1 if verdict.verdict == "overfitting" else 0
        )
        if self.stop_on_overfitting and self._overfit_run >= self.patience:
            self.model.stop_training = True
            if self.verbose:
                console.print_msg(
                    f"\nEpoch {epoch + 1}: OverfittingMonitor stopping "
                    f"training after {self._overfit_run} overfitting "
                    "epoch(s)."
                )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._fit_validates and not self._validated and not self.gaps:
            self.reason = (
                "no epoch of this fit was validated "
                f"(validation_freq={self._validation_freq!r})")
        if self.restore_best_weights and self._best_weights is not None:
            self.model.set_weights(self._best_weights)
            self.reason += (
                f"; weights restored from epoch {self.best_epoch + 1}, the "
                "best on validation"
            )
        if self._writer is not None:
            self._writer.text(
                tags.FIT_DIAGNOSIS,
                f"**{self.diagnosis}**: {self.reason}",
                max(len(self.gaps) - 1, 0),
            )
        tensorboard.close_run(self._writer)
        self._writer = None
        if self.verbose and self.gaps:
            console.print_msg(
                f"\nOverfittingMonitor: {self.diagnosis}: {self.reason}."
            )

    def _values(self, logs, epoch):
        key, val_key = self.metric, "val_" + self.metric
        if key not in logs:
            raise ValueError(
                f"OverfittingMonitor(metric={self.metric!r}) found no "
                f"{key!r} in the epoch logs. Compile the model with that "
                f"metric or pick one of the keys there: {sorted(logs)}"
            )
        if val_key not in logs:
            if not has_validation(logs):
                # outside Keras' `fit`: the epoch logs are all there is
                raise _no_validation(
                    f"epoch {epoch + 1} ended without validation",
                    f" Keys in the epoch logs: {sorted(logs)}")
            raise ValueError(
                f"OverfittingMonitor found no {val_key!r} in the epoch logs. "
                f"Keys there: {sorted(logs)}"
            )
        return float(logs[key]), float(logs[val_key])

    def _check_validation(self, running):
        """Before the first step: a `fit` that never validates is refused,
        one whose `validation_freq` validates none of its epochs warned."""
        if not running.validates:
            raise _no_validation("this `fit` has none")
        epochs = int(self.params.get("epochs", 0) or 0)
        validated = running_fit.validated_epochs(running, epochs)
        if epochs > running.initial_epoch and not any(
                epoch >= running.initial_epoch for epoch in validated):
            warnings.warn(
                "OverfittingMonitor: this fit's "
                f"validation_freq={running.validation_freq!r} validates "
                f"none of its epochs ({running.initial_epoch + 1} to "
                f"{epochs}), so no train/validation gap is measured.",
                stacklevel=3,
            )

    def _read_trend(self, verdict, logs, train):
        """At chance: underfitting; else the losses' trend may say overfitting."""
        self.evidence = ""
        loss, val_loss = logs.get("loss"), logs.get("val_loss")
        if loss is None or val_loss is None or not math.isfinite(loss):
            return verdict
        self.train_losses.append(float(loss))
        self.val_losses.append(float(val_loss))
        chance = generalization.at_chance(
            float(loss), self._chance.get("loss"),
            train if self._chance.get("accuracy") else None,
            self._chance.get("accuracy"))
        if chance:
            level = (f"loss {float(loss):.4g}, chance level "
                     f"{self._chance['loss']:.4g}" if self._chance.get("loss")
                     else f"{self.metric} {train:.4g}, chance level "
                     f"{self._chance['accuracy']:.4g}")
            self.evidence = f"training is no better than chance ({level})"
            return generalization.Diagnosis(
                "underfitting",
                f"{self.evidence}: the model has not learned; if the loss "
                "never fell, see the learning rate and the activations; "
                "else use a bigger model or train longer")
        if verdict.verdict == "good_fit":
            trend = generalization.overfitting_trend(
                self.train_losses, self.val_losses, self.gaps,
                overfitting_gap=self.overfitting_gap)
            if trend:
                self.evidence = trend
                return generalization.Diagnosis(
                    "overfitting",
                    f"{trend}: add regularization (L2, dropout), get more "
                    "data, or stop earlier")
        return verdict

    def _track_best(self, epoch, held_out):
        better = self.best_value is None or (
            held_out < self.best_value if self.lower_is_better
            else held_out > self.best_value
        )
        if better:
            self.best_epoch, self.best_value = epoch, held_out
            if self.restore_best_weights:
                self._best_weights = training.copy_weights(self.model)
