"""The driver shared by the decay callbacks: it sets the optimizer's rate.

The curve itself lives in a `keras_trainopt.schedules` class; the callback only
decides *when* to evaluate it (each epoch or each optimizer step) and writes the
value into the optimizer.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any
from typing import ClassVar
from typing import Literal

import keras

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.schedules._decay_schedule import DecaySchedule

# What `t` counts: epochs (the rate is set at each epoch begin) or optimizer
# steps (the rate is set inside the train step, after each update).
Unit = Literal["epoch", "step"]


class DecayCallback(
    apply_hooks.HookOwner, callback_state.Restorable, keras.callbacks.Callback
):
    """Sets the optimizer's learning rate from a decay schedule during `fit`.

    Subclasses name their schedule class in `schedule_class` and pass its shape
    arguments (e.g. `factor`, `every`) to `__init__` as `shape_config`.

    Time is global: with `unit="epoch"`, `t` is the epoch index Keras passes
    (so `initial_epoch=3`, or a run restored by `BackupAndRestore`, continues
    at t = 3), and the rate is set from the host at each epoch begin. With
    `unit="step"`, `t` is `optimizer.iterations`, the number of updates
    already applied, and the rate is computed *inside the compiled train
    step*, once per update, right after it (`_internal.apply_hooks`): the
    rate of the next update, so between steps the variable holds it, and
    every update, also with `steps_per_execution > 1`, runs with its exact
    rate and no host round trip. At each epoch begin the rate of the first
    update is set from the host, by the same formula (after every
    `on_train_begin`, so after `BackupAndRestore` restored the step count).
    An update that `LossScaleOptimizer` skips runs no hook, so it does not
    advance the rate.

    With `initial_learning_rate=None` the initial rate is read from the
    optimizer at the first `fit`, and kept for later `fit` calls with the
    same optimizer (a run resumed by `BackupAndRestore` continues the same
    curve). A new optimizer (`model.compile()` again, e.g. phase 2 of
    transfer learning at a lower rate) is a new run: the rate is read again,
    from the new optimizer.

    Only one callback may set the learning rate in a `fit`: another one that
    sets it too (a second decay, `SnapshotEnsemble`, SWA with a
    `swa_learning_rate`, Keras' `ReduceLROnPlateau` or
    `LearningRateScheduler`) fails at train begin.
    """

    UNITS = ("epoch", "step")
    schedule_class: ClassVar[type[DecaySchedule] | None] = None

    def __init__(
        self,
        initial_learning_rate: float | None,
        shape_config: Mapping[str, Any],
        *,
        unit: Unit,
        min_learning_rate: float,
        warmup: int,
        verbose: int,
    ) -> None:
        super().__init__()
        self.unit = validation.check_choice("unit", unit, self.UNITS)
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self._shape_config = dict(shape_config)
        self._common_config: dict[str, Any] = {
            "min_learning_rate": min_learning_rate,
            "warmup": warmup,
        }
        initial_learning_rate = validation.check_real(
            "initial_learning_rate",
            initial_learning_rate,
            low=0.0,
            low_open=True,
            allow_none=True,
        )
        if initial_learning_rate is None:
            # Build a schedule anyway so that every other argument is checked
            # now; the real one is built once the optimizer's rate is known.
            min_rate = validation.check_real(
                "min_learning_rate", min_learning_rate, low=0.0
            )
            self._make_schedule(max(1.0, min_rate))
            self._schedule: DecaySchedule | None = None
        else:
            self._schedule = self._make_schedule(initial_learning_rate)
        self.initial_learning_rate = initial_learning_rate
        self._rate_at_set_model: float | None = None
        # the optimizer the rate was read from (a weakref), `None` to adopt
        # the next one (before the first fit, after `set_state`)
        self._resolved_for: weakref.ref[Any] | None = None
        # One hook object for the callback's life: `fit` calls with the same
        # callback then reuse the train function traced with it.
        self._hook = apply_hooks.Hook(after=self._after_update)
        # made at train begin
        self._step_rate: optimizers.StepRate | None = None
        self._applies_at_begin: int | None = None

    # -- the curve ---------------------------------------------------------

    def _make_schedule(
        self,
        initial_learning_rate: float,
        steps_per_epoch: int | None = None,
        gradient_accumulation_steps: int | None = None,
    ) -> DecaySchedule:
        schedule_class = self.schedule_class
        if schedule_class is None:
            raise NotImplementedError(
                f"{type(self).__name__} sets no `schedule_class`."
            )
        return schedule_class(
            initial_learning_rate,
            **self._shape_config,
            **self._common_config,
            steps_per_epoch=steps_per_epoch,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )

    def _bound_schedule(self) -> DecaySchedule:
        if self._schedule is None:
            raise ValueError(
                f"{type(self).__name__} was created with "
                "initial_learning_rate=None, so it takes its initial rate "
                "from the optimizer when training starts, and the curve is "
                "not known before that. Pass `initial_learning_rate` to the "
                "constructor to evaluate or export the schedule earlier."
            )
        return self._schedule

    def learning_rate(self, t: float) -> float:
        """The learning rate at time `t` (epochs or steps, per `unit`).

        A pure function of `t`: the value the callback sets for epoch `t` (or
        for the update that follows `t` earlier updates).
        """
        validation.check_real("t", t, low=0.0)
        return self._bound_schedule().value(t)

    def to_schedule(
        self,
        steps_per_epoch: int | None = None,
        *,
        gradient_accumulation_steps: int | None = None,
    ) -> DecaySchedule:
        """The same curve as a `keras.optimizers.schedules.LearningRateSchedule`.

        Pass the result to an optimizer (`nesterov_sgd(decay.to_schedule())`)
        to decay inside the compiled step with no callback at all. Its value
        at optimizer step `s` equals `learning_rate(s)` for `unit="step"` and
        `learning_rate(s // steps_per_epoch)` for `unit="epoch"`.

        Keras calls an optimizer's schedule with its count of batches, also
        under gradient accumulation, where this callback counts updates
        (`optimizer.iterations`): give the optimizer's
        `gradient_accumulation_steps` to decay per update in `unit="step"`,
        and `steps_per_epoch` in batches in `unit="epoch"`.

        Args:
            steps_per_epoch: required for `unit="epoch"` (the number of
                optimizer steps, batches, per epoch); must be `None` for
                `unit="step"`.
            gradient_accumulation_steps: for `unit="step"`, the optimizer's
                (`None`: no accumulation).
        """
        if self.unit == "epoch":
            if steps_per_epoch is None:
                raise ValueError(
                    f"{type(self).__name__}(unit='epoch').to_schedule() needs "
                    "`steps_per_epoch` to turn optimizer steps into epochs. "
                    "Received: steps_per_epoch=None"
                )
            validation.check_int("steps_per_epoch", steps_per_epoch, low=1)
        elif steps_per_epoch is not None:
            raise ValueError(
                "`steps_per_epoch` only applies to unit='epoch'; with "
                "unit='step' the schedule already counts optimizer steps. "
                f"Received: steps_per_epoch={steps_per_epoch!r}"
            )
        schedule = self._bound_schedule()
        return self._make_schedule(
            schedule.initial_learning_rate, steps_per_epoch=steps_per_epoch,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )

    # -- state ---------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that `cls(**config)` rebuilds it."""
        return {
            "initial_learning_rate": self.initial_learning_rate,
            **self._shape_config,
            "unit": self.unit,
            **self._common_config,
            "verbose": self.verbose,
        }

    def get_state(self) -> dict[str, Any]:
        """What must survive a restart: the initial rate once it is resolved."""
        schedule = self._schedule
        return {
            "initial_learning_rate": (
                None if schedule is None else schedule.initial_learning_rate
            )
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores what `get_state` returned."""
        rate = state.get("initial_learning_rate")
        if rate is not None:
            self._schedule = self._make_schedule(rate)
            self._resolved_for = None  # the run resumes with its optimizer

    # -- Keras hooks ---------------------------------------------------------

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        # Keras calls set_model before any on_train_begin, hence before
        # BackupAndRestore reloads a decayed rate into the optimizer: the rate
        # seen here is the one the user compiled with.
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and optimizers.has_settable_learning_rate(
            optimizer
        ):
            self._rate_at_set_model = optimizers.get_learning_rate(optimizer)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizers.check_settable_learning_rate(
            self.model.optimizer, type(self).__name__
        )
        optimizer = optimizers.unwrap(self.model.optimizer)
        if self.initial_learning_rate is None:
            previous = self._resolved_for and self._resolved_for()
            if self._schedule is None or (
                self._resolved_for is not None and previous is not optimizer
            ):
                # first fit, or a new optimizer (a recompile): a new run
                self._schedule = self._make_schedule(self._rate_at_set_model)
            self._resolved_for = weakref.ref(optimizer)
        optimizers.warn_other_optimizers(
            self.model, type(self).__name__,
            "Put the decay inside those optimizers instead, e.g. "
            f"`keras.optimizers.Adam({type(self).__name__}(...).to_schedule("
            "steps_per_epoch=...))`.",
        )
        # `apply` calls, not updates: under gradient accumulation an epoch
        # shorter than `gradient_accumulation_steps` batches updates nothing
        self._applies_at_begin = optimizers.get_applies(self.model.optimizer)
        self._step_rate = optimizers.StepRate(
            training.unsynced_model(self), self._schedule
        )
        self.install_hook(
            self.model,
            self._hook if self.unit == "step" else None,
            fit=self.params,
            sets_learning_rate=True,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.remove_hook()

    def _after_update(self) -> None:
        self._step_rate.after_update()

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if self.unit == "step":
            self._step_rate.start()
        if self.unit == "epoch":
            rate = self._schedule.value(epoch)
            optimizers.set_learning_rate(self.model.optimizer, rate)
            if self.verbose:
                console.print_msg(
                    f"\nEpoch {epoch + 1}: {type(self).__name__} setting "
                    f"learning rate to {rate:.6g}."
                )

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if self._applies_at_begin is not None:
            # once per fit: did model.optimizer run at all?
            optimizers.warn_if_no_update(
                self.model, type(self).__name__, self._applies_at_begin
            )
            self._applies_at_begin = None
        rate = optimizers.get_learning_rate(self.model.optimizer)
        if logs is not None:
            logs["learning_rate"] = rate
        if self.verbose and self.unit == "step":
            console.print_msg(
                f"\nEpoch {epoch + 1}: {type(self).__name__} learning rate "
                f"is {rate:.6g} after step "
                f"{optimizers.get_iterations(self.model.optimizer)}."
            )
