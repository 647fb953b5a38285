"""`LossMonitor`: batch loss in TensorBoard, divergence stops, LR diagnosis."""

import math
import os
from typing import Any

import keras

from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import loss_buffer
from keras_trainopt._internal import model_facts
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.diagnostics import loss_curve
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard


class LossMonitor(callback_state.Restorable, keras.callbacks.Callback):
    """Watches the batch loss: logs it, stops on divergence, judges the rate.

    The loss curve is the first thing to read when training misbehaves
    (cs231n, "Babysitting the learning process"): a loss that explodes or
    turns NaN means the learning rate is far too high and every further step
    ruins the weights; one that falls slowly and almost linearly means it is
    too low. This callback records the loss of each span of `every` updates
    (exactly, from Keras' loss tracker, not the epoch's running mean) with
    the learning rate, writes both to TensorBoard, stops training as soon as
    the loss is non-finite or diverges, optionally puts back the weights from
    the start of the epoch, and leaves a verdict in `diagnosis` with the
    reason in `reason`.

    The compiled train step records each reading itself, into a small ring
    buffer (`_internal/loss_buffer.py`): the tracker's running total and
    count, the step count and the learning rate, once per `every` applied
    updates. The callback reads the buffer, in one go, before an execution
    once 32 steps and a tenth of a second have passed since the previous
    read (or 256 steps; or a second, when steps are slow), and at each
    epoch's end: every host read of a device value is a round trip, and on
    JAX it waits for the step in flight, so reads stay under ten a second.
    Nothing runs in `on_train_batch_end`: a batch-end hook makes Keras, on
    JAX and PyTorch, dispatch every callback synchronously and wait for
    each step's logs. **Detection delay:** a non-finite or diverged reading
    is seen at the next read, and the execution under way then still runs:
    training stops at most max(32 updates, 0.1 s) + 2 *
    `steps_per_execution` - 1 updates after the reading (never more than
    256 + 2 * `steps_per_execution` - 1 updates; about a second when steps
    are slow), or at the epoch's end if that comes first; the readings
    between are recorded too. On JAX a read in the middle of an epoch takes
    the copy of the buffer made at the previous read (a read of the newest
    one would wait for the steps in flight), so add one more such span
    there.
    The loss comes from the model's loss tracker; a model without one (a
    custom `train_step` that updates no `loss` metric) gets a `ValueError`
    when training begins.

    Divergence: with `smooth` the bias-corrected moving average of the loss
    (`beta = 0.98`, as in learning-rate finders), training has diverged when

        smooth > divergence_threshold * min(smooth so far)

    after at least `min_steps` readings, or as soon as a loss is NaN or inf.
    The curve's shape is judged by `loss_curve_pattern` from the readings
    up to the latest end of an epoch or of training, when `diagnosis`,
    `pattern` or `reason` is read (a pass over the whole curve: never per
    step, and not at every epoch's end, where it would grow with the run):
    a loss that blew up above twice the chance level and stays at or above
    it (a very high rate: "the loss drops fast, then gets stuck at a worse
    value") counts as a rate too high, however flat it looks. The chance
    level is ln(classes) for a classification cross-entropy, read off the
    model (`chance_loss`).
    The sentences quote raw loss means (the first readings, the recent
    ones), not the lagging smoothed value.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import LossMonitor
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(10.0), loss="mse")  # far too high
        >>> monitor = LossMonitor(every=1, verbose=0)
        >>> x = np.random.default_rng(0).normal(size=(256, 4))
        >>> history = model.fit(x, x.sum(axis=1), epochs=20, batch_size=8,
        ...                     callbacks=[monitor], verbose=0)
        >>> monitor.diagnosis
        'learning_rate_too_high'
        >>> len(history.epoch) < 20  # stopped early
        True

    Args:
        log_dir: TensorBoard folder (the run `monitors` inside it gets
            `loss_monitor/batch_loss` and `loss_monitor/learning_rate`, with
            the optimizer's step count on the x axis, as Keras' TensorBoard
            callback); `None` writes nothing.
        every: read the loss every `every` updates (int >= 1); each reading
            is the mean loss of the train steps since the previous one, at
            the optimizer's step count after them. Readings are taken in the
            step, so they end every `every` applied updates whatever
            `steps_per_execution`; an epoch's last, shorter span is read at
            its end too (before validation, which resets the loss tracker).
            Under mixed precision the updates `LossScaleOptimizer` skips do
            not count towards `every`; their losses join the next reading's
            mean (at an epoch's end, with no update since, they are dropped).
        divergence_threshold: factor over the best smoothed loss that counts
            as divergence (> 1; default 4, as fastai's learning-rate finder).
        min_steps: readings before divergence or shape is judged (int >= 1).
        stop_on_divergence: set `model.stop_training` on a non-finite or
            diverged loss.
        restore_weights: on divergence, put back the last good weights: those
            of the latest epoch start at which the smoothed loss was within
            1.5x its best (one copy of the weights per epoch). They are put
            back when the stopped epoch ends, before its validation.
        oscillation_threshold, linearity_threshold: see
            `keras_trainopt.diagnostics.diagnose_loss_curve`.
        chance_loss: the loss of a model no better than chance: `"auto"`
            reads it off the model at train begin (ln(classes) for a
            (sparse) categorical cross-entropy, ln(2) for a binary one with
            one output, else unknown), a number, or `None` (unknown: a
            blow-up followed by a plateau cannot be told from a good curve).
        verbose: 1 prints the verdict and advice.

    Attributes:
        diagnosis: `"insufficient_data"`, `"good"`,
            `"learning_rate_too_high"` or `"learning_rate_too_low"`.
        pattern: the curve's shape, one of `PATTERNS` (`"non_finite"`: the
            loss became NaN or inf with no rise before; `"diverged"`,
            `"blow_up"`, `"oscillating"`, `"rebound"` (the loss fell, then
            rose back), `"flat"`, `"slow"`,
            `"at_chance"`, `"good"`, `"insufficient_data"`).
        chance_level: the chance-level loss in use, or `None`.
        recent_loss: the mean of the last readings (raw), or `None`.
        reason: the evidence and the advice, in words.
        steps, losses, learning_rates: the recorded series.
        diverged_at_step: the step at which divergence was seen, or `None`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation";
    Smith (2017), "Cyclical learning rates" (the divergence rule).
    """

    DIAGNOSES = (
        "insufficient_data",
        "good",
        "learning_rate_too_high",
        "learning_rate_too_low",
    )
    PATTERNS = tuple(loss_curve.PATTERN_VERDICTS)

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        *,
        every: int = 10,
        divergence_threshold: float = 4.0,
        min_steps: int = 20,
        stop_on_divergence: bool = True,
        restore_weights: bool = False,
        oscillation_threshold: float = 0.5,
        linearity_threshold: float = 0.6,
        chance_loss: float | str | None = "auto",
        verbose: int = 1,
    ) -> None:
        super().__init__()
        self.log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
        self.every = validation.check_int("every", every, low=1)
        self.divergence_threshold = validation.check_real(
            "divergence_threshold", divergence_threshold, low=1.0,
            low_open=True,
        )
        self.min_steps = validation.check_int("min_steps", min_steps, low=1)
        self.stop_on_divergence = validation.check_bool(
            "stop_on_divergence", stop_on_divergence
        )
        self.restore_weights = validation.check_bool(
            "restore_weights", restore_weights
        )
        self.oscillation_threshold = validation.check_real(
            "oscillation_threshold", oscillation_threshold, low=0.0,
            low_open=True,
        )
        self.linearity_threshold = validation.check_real(
            "linearity_threshold", linearity_threshold, low=0.0, low_open=True
        )
        if not (isinstance(chance_loss, str) and chance_loss == "auto"):
            chance_loss = validation.check_real(
                "chance_loss", chance_loss, low=0.0, low_open=True,
                allow_none=True)
        self.chance_loss = chance_loss
        self.chance_level = None if chance_loss == "auto" else chance_loss
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.steps, self.losses, self.learning_rates = [], [], []
        # (diagnosis, pattern, reason); the curve's shape is judged when
        # read (`_verdict`), from the readings up to the latest epoch end
        self._shape = ("insufficient_data", "insufficient_data",
                       "training has not started")
        self._judge_upto = None
        self.diverged_at_step = None
        self._smooth = loss_curve.RunningSmooth()
        self._best = math.inf
        self._written = 0
        self._writer = None
        self._reader = None  # inside `fit` only
        self._buffer = None
        self._last_step = 0
        self._epoch_read = False
        self._good_weights = None
        self._restore_due = False
        self._restored = False  # set_state since the last epoch began

    # -- state ---------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The recorded series and verdict, to resume a monitor after a restart.

        A backup does not judge the curve: `judge_upto` says that the shape
        of the first that many losses is still to be judged (`None`: the
        verdict is the one saved).
        """
        diagnosis, pattern, reason = self._shape
        return {
            "steps": list(self.steps),
            "losses": list(self.losses),
            "learning_rates": list(self.learning_rates),
            "diagnosis": diagnosis,
            "pattern": pattern,
            "reason": reason,
            "judge_upto": self._judge_upto,
            "diverged_at_step": self.diverged_at_step,
            "smooth": [self._smooth.average, self._smooth.count],
            "best": self._best,
            "good_weights": self._good_weights,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.steps = list(state.get("steps", []))
        self.losses = list(state.get("losses", []))
        self.learning_rates = list(state.get("learning_rates", []))
        diagnosis = state.get("diagnosis", "insufficient_data")
        self._shape = (diagnosis, state.get(
            "pattern", "diverged" if state.get("diverged_at_step") is not None
            else diagnosis), state.get("reason", ""))
        self._judge_upto = state.get("judge_upto")
        self.diverged_at_step = state.get("diverged_at_step")
        average, count = state.get("smooth", (0.0, 0))
        self._smooth = loss_curve.RunningSmooth(average=average, count=count)
        self._best = state.get("best", math.inf)
        self._good_weights = state.get("good_weights")
        self._written = len(self.steps)
        self._restored = True

    def get_epoch_state(self) -> dict[str, Any]:
        """The epoch's reading position, for a mid-epoch backup."""
        if self._reader is None:
            return {}
        return {
            "reader": self._reader.position,
            "last_step": self._last_step,
            "epoch_read": self._epoch_read,
            "buffer": self._buffer.get_state(),  # readings not read yet
        }

    def set_epoch_state(self, state: dict[str, Any]) -> None:
        if not state or self._reader is None:
            return
        self._reader.position = state["reader"]
        self._last_step = int(state["last_step"])
        self._epoch_read = state["epoch_read"]
        if "buffer" in state:
            self._buffer.set_state(state["buffer"])
        else:  # a backup made before the buffer: no reading pending
            self._buffer.restart(self._last_step)

    # -- Keras hooks -----------------------------------------------------------

    @property
    def recent_loss(self) -> float | None:
        """The mean of the last `max(3, n // 10)` finite readings, raw."""
        recent = loss_curve.raw_levels(self.losses)[1]
        return None if math.isnan(recent) else recent

    @property
    def peak_loss(self) -> float | None:
        """The largest finite reading, or `None`."""
        peak = loss_curve.raw_levels(self.losses)[2]
        return None if math.isnan(peak) else peak

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        model = self.model
        validation.check_one_optimizer(
            model, "LossMonitor", "counts its readings in the updates of",
            "it records no reading",
            "Log the batch loss of such a model with Keras' "
            "`keras.callbacks.TensorBoard(log_dir, update_freq=10)` instead "
            "(TrainingDoctor, which runs LossMonitor, cannot watch it either).",
        )
        self._reader = training.BatchLossReader(model)
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        if self._buffer is not None and (
            self._buffer.model is not model
            or self._buffer.steps_per_execution != spe
            or self._buffer.tracker is not training.loss_tracker(model)
        ):
            self._buffer.remove_hook()
            self._buffer = None
        if self._buffer is None:
            # Kept across `fit` calls: its hook is then the same, and the
            # train function traced with it is reused.
            self._buffer = loss_buffer.LossBuffer(model, self.every, spe)
        self._last_step = self._buffer.install(fit=self.params)
        if self.chance_loss == "auto":
            self.chance_level = model_facts.describe(self.model)["chance_loss"]
        self._writer = tensorboard.open_run(self.log_dir, "monitors")
        self._written = min(self._written, len(self.steps))

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._reader.reset()
        self._buffer.epoch_begins()
        if self._restored:
            # Restored at an epoch's boundary, maybe after this monitor's
            # train begin (`BackupAndRestore` later in the callbacks): the
            # next reading ends `every` updates after the restored count,
            # as in the run that was interrupted, not after the count
            # before the restore. (A mid-epoch restore puts the buffer's
            # own state back after this, `set_epoch_state`.)
            self._restored = False
            self._last_step = training.applied_updates(
                training.unsynced_model(self))
            self._buffer.restart(self._last_step)
        self._epoch_read = False
        if self.restore_weights and self._looks_healthy():
            self._good_weights = training.copy_weights(self.model)

    # The step records a reading every `every` updates (`LossBuffer`); they
    # are read before an execution, paced by `LossBuffer.read_due` (or a
    # second), and after the epoch's last one: a `on_train_batch_end` hook
    # would make Keras (on JAX and PyTorch) dispatch every callback
    # synchronously and wait for the logs of each step.

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if self._buffer.read_due(batch):
            self._drain(batch)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Validation during `fit` resets the loss tracker: read it first.
        self._finish_epoch()

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._finish_epoch()

    def _finish_epoch(self):
        if self._reader is None or self._epoch_read:
            return  # outside `fit`, or already done at `on_test_begin`
        self._epoch_read = True
        self._drain()
        # The epoch's last span, shorter than `every` updates (none if loss
        # scaling skipped them all: their losses are dropped).
        model = training.unsynced_model(self)  # reads a few values only
        step = training.applied_updates(model)
        if step > self._last_step:
            self._last_step = step
            self._buffer.mark(step)
            loss = self._reader.read()
            if loss is not None:
                self._record(step, loss, training.learning_rate(model))
        if self._restore_due:
            self._restore_due = False
            training.sync_state(self.model)
            self.model.set_weights(self._good_weights)
        if self.diverged_at_step is None:
            self._judge_shape()
        self._flush()

    def _drain(self, steps_run=None):
        """Records the readings the step has made since the last drain."""
        for step, total, count, rate in self._buffer.read(steps_run):
            self._last_step = step
            loss = self._reader.advance(total, count)
            if loss is not None:
                self._record(step, loss, rate)

    def _record(self, step, loss, rate):
        self.steps.append(step)
        self.losses.append(loss)
        self.learning_rates.append(rate)
        self._watch(loss)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._reader = None
        if self._buffer is not None:
            self._buffer.remove_hook()
        if self.diverged_at_step is None:
            self._judge_shape()
        self._flush()
        if self._writer is not None:
            self._writer.text(
                tags.LOSS_DIAGNOSIS,
                f"**{self.diagnosis}**: {self.reason}",
                self.steps[-1] if self.steps else 0,
            )
        tensorboard.close_run(self._writer)
        self._writer = None
        if self.verbose:
            console.print_msg(
                f"\nLossMonitor: {self.diagnosis}: {self.reason}."
            )

    # -- the watching ----------------------------------------------------------

    def _watch(self, loss):
        step = self.steps[-1]
        if not math.isfinite(loss):
            # A loss that was rising (smoothed above 2x its best) diverged;
            # one that turned NaN from a healthy level points at the data
            # or the loss function as much as at the rate.
            rising = self._smooth.count and self._best > 0 and (
                self._smooth.value > 2.0 * self._best)
            self._diverged(step, f"the loss became {loss} at step {step}",
                           "diverged" if rising else "non_finite")
            return
        smoothed = self._smooth.update(loss)
        if self._smooth.count >= self.min_steps and loss_curve.is_diverging(
            smoothed, self._best, self.divergence_threshold
        ):
            self._diverged(
                step,
                f"the loss diverged at step {step} (smoothed {smoothed:.4g}, "
                f"more than {self.divergence_threshold:g}x its best "
                f"{self._best:.4g})",
                "diverged",
            )
            return
        self._best = min(self._best, smoothed)

    def _looks_healthy(self):
        """No divergence seen, and the smoothed loss within 1.5x its best."""
        if self.diverged_at_step is not None:
            return False
        return self._smooth.count == 0 or self._smooth.value <= 1.5 * self._best

    def _diverged(self, step, what, pattern):
        if self.diverged_at_step is not None:
            return
        self.diverged_at_step = step
        rate = self.learning_rates[-1] if self.learning_rates else None
        advice = "lower the learning rate"
        if rate:
            advice += f", e.g. to about {rate / 10:.2g}"
        if pattern == "non_finite":
            advice = ("with no rise before it: look for NaN or inf in the "
                      "data and for a log or division by zero in the loss, "
                      f"or {advice}")
        reason = f"{what}: {advice}"
        if self.stop_on_divergence:
            self.model.stop_training = True
        if self.restore_weights and self._good_weights is not None:
            # At the epoch's end: the execution under way when this is seen
            # still runs, and would change the restored weights.
            self._restore_due = True
            reason += "; the last good weights were restored"
        self._shape = ("learning_rate_too_high", pattern, reason)
        self._judge_upto = None
        if self.verbose:
            console.print_msg(f"\nLossMonitor: stopping: {self.reason}.")

    def _judge_shape(self):
        """The shape is due to be judged from every reading so far.

        Judged when the verdict is read: a pass over the whole curve at
        every epoch's end would grow with the run.
        """
        self._judge_upto = len(self.losses)

    def _verdict(self):
        if self._judge_upto is not None:
            pattern, reason = loss_curve.loss_curve_pattern(
                self.losses[:self._judge_upto],
                chance_loss=self.chance_level,
                min_steps=self.min_steps,
                oscillation_threshold=self.oscillation_threshold,
                linearity_threshold=self.linearity_threshold,
            )
            self._shape = (loss_curve.PATTERN_VERDICTS[pattern], pattern,
                           reason)
            self._judge_upto = None
        return self._shape

    @property
    def diagnosis(self) -> str:
        """The verdict: see the class's Attributes."""
        return self._verdict()[0]

    @property
    def pattern(self) -> str:
        """The curve's shape: see the class's Attributes."""
        return self._verdict()[1]

    @property
    def reason(self) -> str:
        """The evidence and the advice, in words."""
        return self._verdict()[2]

    def _flush(self):
        if self._writer is None:
            self._written = len(self.steps)
            return
        start = self._written
        # one event per reading: its loss and learning rate together
        self._writer.write_series(
            self.steps[start:],
            {tags.LOSS_BATCH: self.losses[start:],
             tags.LEARNING_RATE_STEP: self.learning_rates[start:]},
            descriptions={
                tags.LOSS_BATCH: (
                    "Mean training loss of the train steps since the "
                    "previous point, read every "
                    f"{self.every} optimizer update(s) and at each epoch's "
                    "end. x: optimizer updates applied (steps that "
                    "`LossScaleOptimizer` skipped are in the mean, not on "
                    "x)."),
                tags.LEARNING_RATE_STEP: (
                    "The learning rate of the next update, at each "
                    f"`{tags.LOSS_BATCH}` point."),
            },
        )
        self._writer.flush()
        self._written = len(self.steps)
