"""The base of the callbacks that collect weight snapshots for an ensemble."""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_trainopt._internal import atomic
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import console
from keras_trainopt._internal import dir_lock
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.ensembles.ensemble_model import EnsembleModel

_FILE = re.compile(r"^snapshot-step(\d+)\.weights\.h5$")


class SnapshotCallback(callback_state.Restorable, keras.callbacks.Callback):
    """Collects snapshots of the weights during `fit`; builds their ensemble.

    Subclasses decide when to take a snapshot (`_take_snapshot(step)`); this
    class keeps them, optionally writes each to `directory` as
    `snapshot-step<step>.weights.h5` (loadable with `model.load_weights`),
    and turns them into an `EnsembleModel`.

    A snapshot is identified by the optimizer step it was taken at. Files are
    written atomically (to a temporary name, then renamed), and a run that
    was interrupted and resumed (`keras.callbacks.BackupAndRestore`) reloads
    from `directory` the snapshots taken up to the step it resumes from, so
    the ensemble is the same as without the interruption. In a multi-worker
    `tf.distribute` run every worker keeps the snapshots in memory, and only
    the chief writes (and deletes) files.

    A new optimizer is a new run, not a resume: after `model.compile()` with
    a new optimizer (whose step count starts at 0 again) the callback keeps
    the earlier snapshots and numbers the new ones after them, by adding the
    step reached with the earlier optimizers (`step_offset`). So
    `snapshot_steps` keeps increasing across runs, and files of the new run
    never overwrite those of the earlier one. Snapshots taken after the step
    a run resumes from are dropped only on a real resume: the same optimizer
    with its step count restored (Keras' `BackupAndRestore`), or a state
    restored by `keras_trainopt.BackupAndRestore`.

    Attributes:
        snapshots: list of snapshots, each a list of NumPy arrays aligned with
            `model.weights`, oldest first.
        snapshot_steps: the step of each snapshot: the optimizer's step
            count plus `step_offset`.
        step_offset: the updates made with the earlier optimizers this
            callback was used with (0 in the first run).

    Args:
        directory: where to write the snapshots, or `None` to keep them in
            memory only.
        verbose: 1 to print a line per snapshot.
    """

    def __init__(
        self, *, directory: str | os.PathLike[str] | None = None, verbose: int = 0
    ) -> None:
        super().__init__()
        self.directory = validation.check_path(
            "directory", directory, allow_none=True
        )
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self.snapshots: list[list[np.ndarray]] = []
        self.snapshot_steps: list[int] = []
        self._epoch_begin_step = 0
        self.step_offset = 0
        self._optimizer = None  # weakref to the optimizer of the current run
        self._optimizer_end_step = 0  # its step count at the last epoch begin
        self._resumed = False
        self._folder_claim = None

    # -- snapshots -----------------------------------------------------------

    def _take_snapshot(self, step: int) -> None:
        """Records the model's current weights as the snapshot of `step`."""
        step = self.step_offset + int(step)
        if self.snapshot_steps and self.snapshot_steps[-1] >= step:
            return
        training.sync_state(self.model)
        self.snapshots.append(training.copy_weights(self.model))
        self.snapshot_steps.append(step)
        if self._writes_files():
            path = self._path(step)
            atomic.check_free_space(
                path, sum(w.nbytes for w in self.snapshots[-1])
            )
            atomic.write_atomically(
                path, lambda partial: self.model.save_weights(partial)
            )
        if self.verbose:
            console.print_msg(
                f"\n{type(self).__name__}: snapshot {len(self.snapshots)} "
                f"taken at step {step}."
            )

    def _drop_oldest(self):
        self.snapshots.pop(0)
        step = self.snapshot_steps.pop(0)
        if self._writes_files():
            path = self._path(step)
            if os.path.exists(path):
                os.remove(path)

    def _writes_files(self):
        # Not the other workers of a multi-worker run: their weights are the
        # chief's, and writing them too would race on a shared folder.
        return self.directory is not None and distribute.is_chief()

    def _path(self, step):
        return os.path.join(self.directory, f"snapshot-step{int(step):09d}.weights.h5")

    def _reload(self, up_to_step):
        """Snapshots in `directory` taken at or before `up_to_step`."""
        if self.directory is None or not os.path.isdir(self.directory):
            return
        steps = sorted(
            int(m.group(1))
            for m in map(_FILE.match, os.listdir(self.directory))
            if m is not None and int(m.group(1)) <= up_to_step
        )
        if not steps:
            return
        clone = keras.models.clone_model(self.model)
        for step in steps:
            clone.load_weights(self._path(step))
            self.snapshots.append(training.copy_weights(clone))
            self.snapshot_steps.append(step)

    def ensemble(self, last: int | None = None) -> EnsembleModel:
        """An `EnsembleModel` averaging the predictions of the snapshots.

        Each member is a clone of the model (`keras.models.clone_model`)
        holding one snapshot's weights.

        Args:
            last: use only the `last` most recent snapshots (int >= 1), or
                all of them (`None`).
        """
        if not self.snapshots:
            raise ValueError(
                f"{type(self).__name__} has no snapshots yet: they are taken "
                "during `fit` with this callback."
            )
        validation.check_int("last", last, low=1, allow_none=True)
        chosen = self.snapshots if last is None else self.snapshots[-last:]
        members = []
        for weights in chosen:
            member = keras.models.clone_model(self.model)
            member.set_weights(weights)
            members.append(member)
        return EnsembleModel(members, name=f"{self.model.name}_ensemble")

    # -- state ---------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """The snapshots and their steps (NumPy arrays and ints)."""
        return {
            "snapshots": [[np.array(w) for w in s] for s in self.snapshots],
            "snapshot_steps": list(self.snapshot_steps),
            "step_offset": int(self.step_offset),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores what `get_state` returned."""
        if len(state["snapshots"]) != len(state["snapshot_steps"]):
            raise ValueError(
                "The state has "
                f"{len(state['snapshots'])} snapshots but "
                f"{len(state['snapshot_steps'])} steps."
            )
        self.snapshots = [[np.array(w) for w in s] for s in state["snapshots"]]
        self.snapshot_steps = [int(s) for s in state["snapshot_steps"]]
        self.step_offset = int(state.get("step_offset", 0))
        self._resumed = True
        # the optimizer the run resumes with continues the saved run
        self._optimizer = None

    # -- Keras hooks ---------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._follow_optimizer()
        self._resumed = bool(self.snapshots)
        if self._writes_files() and self._folder_claim is None:
            self._folder_claim = dir_lock.claim(self.directory, "`directory`")
            atomic.remove_partial_files(self.directory)

    def _follow_optimizer(self):
        """Starts a new run (after the earlier steps) for a new optimizer."""
        optimizer = optimizers.unwrap(self.model.optimizer)
        previous = None if self._optimizer is None else self._optimizer()
        if previous is optimizer:
            return
        if self._optimizer is not None:
            # a new optimizer (a recompile): count on after the earlier run
            end = self._optimizer_end_step
            if previous is not None:
                end = max(end, optimizers.get_iterations(previous))
            self.step_offset = max(
                self.step_offset + end,
                self.snapshot_steps[-1] if self.snapshot_steps else 0,
            )
        self._optimizer = weakref.ref(optimizer)
        self._optimizer_end_step = 0

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._optimizer_end_step = optimizers.get_iterations(self.model.optimizer)
        dir_lock.release(self._folder_claim)
        self._folder_claim = None

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        # Read here, after every on_train_begin (BackupAndRestore may have
        # restored the optimizer's step count there).
        step = optimizers.get_iterations(self.model.optimizer)
        self._optimizer_end_step = step
        if not self._resumed:
            self._reload(self.step_offset + step)
            self._resumed = True
        # a resumed run drops what the interrupted one took after its backup
        while self.snapshot_steps and self.snapshot_steps[-1] > self.step_offset + step:
            self.snapshots.pop()
            self.snapshot_steps.pop()
        self._epoch_begin_step = step
