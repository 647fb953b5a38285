"""`SnapshotEnsemble`: M models for the price of one run (Huang et al. 2017)."""

from __future__ import annotations

import math
import os
import warnings
import weakref
from typing import Any

import keras

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.callbacks._snapshot_callback import SnapshotCallback
from keras_trainopt.schedules.cyclic_cosine import CyclicCosineSchedule


class SnapshotEnsemble(apply_hooks.HookOwner, SnapshotCallback):
    """Cyclic cosine annealing with a snapshot at the end of every cycle.

    An ensemble usually costs one training run per member. A snapshot
    ensemble gets its members from a single run: the learning rate follows
    `cycles` cosine cycles, each annealing the model into a local minimum and
    then restarting high to escape it, and the weights at the end of each
    cycle are kept (Huang et al. 2017). Averaging the snapshots' predictions
    (`ensemble()`) typically beats the single final model at the same
    training cost. With `t` the 0-based optimizer step and `T` the total
    number of steps of the `fit` call,

        lr(t) = lr0 / 2 * (cos(pi * (t mod L) / L) + 1),   L = ceil(T / cycles)

    set inside the compiled train step before every update (exact with
    `steps_per_execution > 1`), and a snapshot is taken after the update that
    ends each cycle: after steps L, 2L, ... and after the last step T. `t`
    counts the optimizer's updates, so a run resumed with
    `keras.callbacks.BackupAndRestore` continues the same schedule, and
    `snapshot_steps` are optimizer step counts. Under mixed precision the
    updates `LossScaleOptimizer` skips (non-finite gradients) are not
    counted: a cycle ends after L applied updates, and the last snapshot is
    taken after the last step of `fit`, at the count reached by then.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import SnapshotEnsemble
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.05), loss="mse")
        >>> x, y = np.ones((64, 4)), np.ones((64, 1))
        >>> snapshots = SnapshotEnsemble(cycles=3)
        >>> _ = model.fit(x, y, batch_size=16, epochs=6, callbacks=[snapshots],
        ...               verbose=0)
        >>> snapshots.cycle_steps, snapshots.snapshot_steps
        (8, [8, 16, 24])
        >>> ensemble = snapshots.ensemble()  # a keras.Model

    Args:
        cycles: `M`, the number of cycles and snapshots (int >= 1).
        initial_learning_rate: `lr0`, the rate at the start of every cycle;
            `None` takes the optimizer's rate when training starts.
        directory: also write each snapshot there (see `SnapshotCallback`).
        verbose: 1 to print a line per snapshot.

    Reference: G. Huang, Y. Li, G. Pleiss, Z. Liu, J. E. Hopcroft and
    K. Q. Weinberger, "Snapshot Ensembles: Train 1, get M for free",
    ICLR 2017.
    """

    def __init__(
        self,
        cycles: int = 5,
        initial_learning_rate: float | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(directory=directory, verbose=verbose)
        self.cycles = validation.check_int("cycles", cycles, low=1)
        self.initial_learning_rate = validation.check_real(
            "initial_learning_rate", initial_learning_rate, low=0.0,
            low_open=True, allow_none=True,
        )
        self.cycle_steps: int | None = None  # L, known when training starts
        self.total_steps: int | None = None  # T
        self._schedule: CyclicCosineSchedule | None = None
        # (lr0, L) -> Hook: one traced step per schedule
        self._hooks: dict[tuple[float, int], apply_hooks.Hook] = {}
        self._rate_at_set_model: float | None = None
        # weakref to the optimizer it was read from
        self._rate_read_from: weakref.ref[Any] | None = None
        self._previous_step = 0  # the updates applied at the last check
        self._first_batch = None  # the epoch's first batch index
        self._final_epoch = False

    def learning_rate(self, t: float) -> float:
        """The rate of update `t` (0-based) in the current or last `fit`."""
        if self._schedule is None:
            raise ValueError(
                "SnapshotEnsemble's cycle length depends on the number of "
                "steps of `fit`, so its schedule is known once training "
                "starts."
            )
        return self._schedule.value(t)

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        # before BackupAndRestore reloads a rate changed by the schedule; read
        # again from a new optimizer (a recompile starts a new run)
        optimizer = getattr(model, "optimizer", None)
        if not optimizers.has_settable_learning_rate(optimizer):
            return
        inner = optimizers.unwrap(optimizer)
        if self._rate_read_from is None or self._rate_read_from() is not inner:
            self._rate_at_set_model = optimizers.get_learning_rate(optimizer)
            self._rate_read_from = weakref.ref(inner)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        optimizers.check_settable_learning_rate(
            self.model.optimizer, type(self).__name__
        )
        optimizers.warn_other_optimizers(
            self.model, "SnapshotEnsemble",
            "Put a cyclic schedule in those optimizers (e.g. "
            "`keras_trainopt.CyclicCosineSchedule`) and collect snapshots "
            "with `keras_trainopt.CheckpointEnsemble`.",
        )
        steps = (self.params or {}).get("steps")
        epochs = (self.params or {}).get("epochs")
        if not steps:
            raise ValueError(
                "SnapshotEnsemble spreads its cycles over the whole run, so it "
                "needs the number of steps per epoch, which Keras does not "
                "know for this data. Pass `steps_per_epoch` to `fit`. "
                f"Received: steps={steps!r}"
            )
        # the updates of the run: under gradient accumulation, one per
        # `gradient_accumulation_steps` batches
        accumulation = optimizers.accumulation_steps(self.model.optimizer)
        self.total_steps = int(epochs) * int(steps) // accumulation
        if self.cycles > self.total_steps:
            per_update = (f" / {accumulation} batches per update"
                          if accumulation > 1 else "")
            raise ValueError(
                f"`cycles` must be at most the number of training updates "
                f"({self.total_steps} = {epochs} epochs x {steps} "
                f"steps{per_update}). Received: cycles={self.cycles}"
            )
        self.cycle_steps = math.ceil(self.total_steps / self.cycles)
        rate = self.initial_learning_rate or self._rate_at_set_model
        self._schedule = CyclicCosineSchedule(rate, self.cycle_steps)
        key = (rate, self.cycle_steps)
        if key not in self._hooks:
            schedule = self._schedule
            self._hooks[key] = apply_hooks.Hook(
                before=lambda: self._assign_rate(schedule)
            )
        # Before the folder is claimed: a second writer of the rate fails here.
        self.install_hook(
            self.model, self._hooks[key], fit=self.params,
            sets_learning_rate=True,
        )
        super().on_train_begin(logs)
        execution = getattr(self.model, "steps_per_execution", 1) or 1
        # Executions restart with every epoch: a cycle that ends `p` steps
        # into an epoch ends an execution only if `p` is a multiple of it.
        late = [
            end
            for end in range(self.cycle_steps, self.total_steps, self.cycle_steps)
            if end % int(steps) % execution
        ]
        if late:
            warnings.warn(
                f"SnapshotEnsemble: with steps_per_execution={execution} and "
                f"{steps} steps per epoch, cycles of {self.cycle_steps} steps "
                f"end inside an execution (first after step {late[0]}), so "
                "those snapshots are taken at the end of that execution, up "
                f"to {execution - 1} steps late.",
                stacklevel=2,
            )

    def _assign_rate(self, schedule: CyclicCosineSchedule) -> None:
        optimizer = training.unsynced_model(self).optimizer
        optimizers.assign_learning_rate_in_step(
            optimizer, schedule(optimizers.unwrap(optimizer).iterations)
        )

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        super().on_epoch_begin(epoch, logs)
        self._previous_step = self._epoch_begin_step
        self._first_batch = None
        self._final_epoch = epoch + 1 == self.params.get("epochs")

    # The snapshot of a cycle is taken at the first step boundary after the
    # update that ends it: before the next execution (`on_train_batch_begin`)
    # or at the epoch's end, after validation, which changes no weight (an
    # average swapped in to validate is swapped back out). Not in
    # `on_train_batch_end`: a callback that overrides it makes Keras wait
    # for every step on JAX and PyTorch.

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        # `batch` is the index of the execution's first step; a resumed
        # epoch's first index is the step it resumes at.
        if self._first_batch is None:
            self._first_batch = batch
        self._snapshot_ended_cycle(
            self._epoch_begin_step + batch - self._first_batch
        )

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._snapshot_ended_cycle(None, last=self._final_epoch)

    def finish_step_boundary(self) -> None:
        # A mid-epoch backup is written before this callback's batch hook:
        # a cycle that ended at its step is snapshot first, into the backup.
        self._snapshot_ended_cycle(None)

    def _snapshot_ended_cycle(self, bound: int | None, last: bool = False):
        """Takes the snapshot of a cycle that ended since the last check.

        Snapshots go by the optimizer's count of applied updates, not by
        batch-hook calls: with steps_per_execution > 1 the hooks fire once
        per execution, and under mixed precision the updates
        LossScaleOptimizer skips are not counted. A cycle ending inside an
        execution is snapshot at its end.

        Args:
            bound: the steps run (the updates applied are at most that, so
                the device is read only once a cycle may have ended), or
                `None` to read now.
            last: the epoch's end of the last epoch: a snapshot whatever
                the step.
        """
        length = self.cycle_steps
        previous = self._previous_step // length
        if bound is not None and bound // length <= previous:
            return
        step = training.applied_updates(training.unsynced_model(self))
        if step // length > previous or last:
            self._take_snapshot(step)
        self._previous_step = step

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        self.remove_hook()

    def get_config(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "initial_learning_rate": self.initial_learning_rate,
            "directory": self.directory,
            "verbose": self.verbose,
        }
