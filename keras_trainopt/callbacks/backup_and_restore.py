"""`BackupAndRestore`: resume a killed run exactly, callbacks included."""

import contextlib
import os
import warnings

import keras

from keras_trainopt._internal import atomic
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import dir_lock
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import training_state
from keras_trainopt._internal import validation


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the whole training state each epoch; a restart resumes it.

    Keras' `BackupAndRestore` saves the weights and the epoch, but not the
    state of the other callbacks, and it overwrites its one weights file in
    place, so a run killed while that file is written cannot start again.
    This drop-in replacement saves, at the end of every epoch:

    - the model's and the optimizer's variables, which include the step
      count, the learning rate and the running averages of
      `ExponentialMovingAverage` and `StochasticWeightAveraging`;
    - the state of every keras_trainopt callback in the same `fit` (decay
      callbacks, monitors' histories, `TrainingDoctor`'s findings, snapshot
      lists), found by itself: no need to list them;
    - the state of the model's random seed generators (which
      `save_weights` leaves out), so that dropout after a restart draws the
      masks it would have drawn.

    All of it goes into one NumPy `.npz` file per epoch (a zip archive whose
    members carry CRC-32 checksums: a damaged file is detected on reading).
    Keras' `.weights.h5` is not used: h5py crashes the process (SIGSEGV)
    when a write fails on a full disk. Each file is written to a temporary
    name, fsynced and renamed, and the previous epoch's backup is kept
    (`double_checkpoint=True`), so a kill at any instant leaves a complete
    backup. When `fit` starts again with the
    same model and callbacks, the newest backup that passes its checks is
    loaded, and the run continues from the epoch after it: weights, averages,
    learning rate and histories then match an uninterrupted run (to float
    rounding), provided each epoch sees its batches in the same order
    (`shuffle=False`, or a pipeline seeded per epoch). A corrupt or truncated
    backup is skipped with a warning naming it; if none is usable, an
    `OSError` lists every file and why.

    Only one run may use `backup_dir` at a time: a second one fails at
    `fit` start. Under a multi-worker strategy only the chief writes, and
    every worker reads the backup at start (so `backup_dir` must be on a
    shared file system).

    Examples:
        >>> import keras, numpy as np, tempfile
        >>> import keras_trainopt as kt
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1), loss="mse")
        >>> x = np.random.default_rng(0).normal(size=(64, 4))
        >>> monitor = kt.LossMonitor(every=1, verbose=0)
        >>> backup = kt.BackupAndRestore(tempfile.mkdtemp())
        >>> callbacks = [kt.StepDecay(0.1, 0.5, 2), monitor, backup]
        >>> class Preempted(keras.callbacks.Callback):  # stands in for a kill
        ...     def on_epoch_begin(self, epoch, logs=None):
        ...         if epoch == 2:
        ...             raise RuntimeError("preempted")
        >>> try:
        ...     model.fit(x, x.sum(axis=1), epochs=4, shuffle=False, verbose=0,
        ...               callbacks=callbacks + [Preempted()])
        ... except RuntimeError:
        ...     pass
        >>> _ = model.fit(x, x.sum(axis=1), epochs=4, shuffle=False, verbose=0,
        ...               callbacks=callbacks)  # runs epochs 3 and 4 only
        >>> backup.restored_epoch, len(monitor.losses)  # 2 batches per epoch
        (2, 8)

    Args:
        backup_dir: folder for the backups; used by this run alone. Deleted
            at the end of `fit` when `delete_checkpoint` is True.
        save_freq: `"epoch"` (the only value: Keras' integer `save_freq`
            resumes a half-done epoch from its first batch, so the result
            would differ from an uninterrupted run).
        double_checkpoint: keep the previous epoch's backup as well, to fall
            back to if the newest one is damaged (default True; Keras'
            default is False).
        delete_checkpoint: delete `backup_dir` when `fit` ends normally.

    Reference: `keras.callbacks.BackupAndRestore`; atomic replacement as in
    POSIX `rename(2)`.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=True,
                 delete_checkpoint=True):
        # a path, non-empty, and not an existing file
        backup_dir = validation.check_path("backup_dir", backup_dir)
        if not isinstance(save_freq, str) or save_freq != "epoch":
            raise ValueError(
                "`save_freq` must be 'epoch': a backup taken in the middle of "
                "an epoch would be resumed from the epoch's first batch. "
                f"Received: save_freq={save_freq!r}"
            )
        super().__init__(
            os.fspath(backup_dir),
            save_freq="epoch",
            double_checkpoint=validation.check_bool(
                "double_checkpoint", double_checkpoint
            ),
            delete_checkpoint=validation.check_bool(
                "delete_checkpoint", delete_checkpoint
            ),
        )
        self._lock = None
        self._first_epoch = None
        self._saved_epoch = None
        self.restored_epoch = None

    def get_config(self):
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }

    # -- Keras hooks ---------------------------------------------------------

    def on_train_begin(self, logs=None):
        if distribute.is_chief() and self._lock is None:  # else: a fit raised
            self._lock = dir_lock.claim(self.backup_dir, "`backup_dir`")
            atomic.remove_partial_files(self.backup_dir)
        self.restored_epoch = None
        self._first_epoch = None
        self._load_model()
        self._saved_epoch = self.restored_epoch

    def on_epoch_begin(self, epoch, logs=None):
        # The previous epoch is complete only here: every callback's
        # on_epoch_end, which may come after ours in the list, has run.
        if self._first_epoch is None:
            self._first_epoch = epoch
        elif self._saved_epoch != epoch:
            self._save_model(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1

    # No mid-epoch backups: Keras' batch hook is replaced by the default,
    # no-op one, which Keras recognises, so it still dispatches the batch
    # hooks of the other callbacks asynchronously (JAX, PyTorch).
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def on_train_end(self, logs=None):
        try:
            if not self.delete_checkpoint:
                if self._current_epoch != self._saved_epoch:
                    self._save_model(self._current_epoch)
            elif self._lock is not None:
                for _, path in self._backups():
                    os.remove(path)
        finally:
            dir_lock.release(self._lock)  # deletes the lock file
            if self.delete_checkpoint and self._lock is not None:
                with contextlib.suppress(OSError):  # the user's files stay
                    os.rmdir(self.backup_dir)
            self._lock = None
            if self.restored_epoch is not None:
                # Keras never clears it: the next `fit` would start there too.
                self.model._initial_epoch = None

    # -- saving ----------------------------------------------------------------

    def _save_model(self, epoch=None):
        """Writes the backup for `epoch` completed epochs (chief only)."""
        epoch = self._current_epoch if epoch is None else epoch
        self._current_epoch = epoch
        training.sync_state(self.model)
        states = {
            name: callback.get_state()
            for name, callback in self._siblings().items()
        }
        self._saved_epoch = epoch
        if not distribute.is_chief():
            return
        training_state.write_backup(
            training_state.backup_path(self.backup_dir, epoch),
            epoch,
            training_state.variables(self.model),
            states,
        )
        self._prune(keep=2 if self.double_checkpoint else 1)

    def _backups(self):
        """`[(epoch, path)]`, newest first."""
        return training_state.backup_files(self.backup_dir)

    def _prune(self, keep):
        for _, path in self._backups()[keep:]:
            os.remove(path)

    # -- restoring -------------------------------------------------------------

    def _load_model(self):
        if not self.model.built:
            raise ValueError(
                "BackupAndRestore needs a built model: call the model on a "
                f"batch, or create it with `keras.Input`, before `fit`. Model "
                f"{self.model.name} is not built."
            )
        backups = self._backups()
        if not backups:
            return
        if self.model.optimizer is not None:
            optimizers.build_optimizer(self.model)
        problems = []
        for epoch, path in backups:
            try:
                state = training_state.read_backup(path)
                training_state.assign(
                    training_state.variables(self.model), state["variables"]
                )
            except Exception as error:  # noqa: BLE001 - any damage: try older
                problems.append(f"{path}: {error}")
                warnings.warn(
                    f"BackupAndRestore: skipping the damaged backup {path} "
                    f"({error}); trying an older one.",
                    stacklevel=2,
                )
                continue
            self._restore_callbacks(state["callbacks"])
            self.model._initial_epoch = epoch
            self.restored_epoch = epoch
            self._current_epoch = epoch
            return
        raise OSError(
            f"No usable backup in {self.backup_dir}: "
            + "; ".join(problems)
            + ". Delete the folder to start training from scratch."
        )

    def _restore_callbacks(self, states):
        siblings = self._siblings()
        for name, callback in siblings.items():
            if name in states:
                callback.set_state(states[name])
        missing = sorted(set(siblings) - set(states))
        unused = sorted(set(states) - set(siblings))
        if missing or unused:
            warnings.warn(
                "BackupAndRestore: the callbacks differ from the backed-up "
                f"run's. Starting fresh: {missing or 'none'}; backed up but "
                f"not in this fit: {unused or 'none'}.",
                stacklevel=3,
            )

    def _siblings(self):
        return callback_state.keyed(callback_state.siblings(self))

