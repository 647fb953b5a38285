"""`BackupAndRestore`: resume a killed run exactly, callbacks included."""

import contextlib
import os
import sys
import warnings
from typing import Any

import keras
import numpy as np

from keras_trainopt._internal import atomic
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import dir_lock
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import preemption
from keras_trainopt._internal import running_fit
from keras_trainopt._internal import training
from keras_trainopt._internal import training_state
from keras_trainopt._internal import validation


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up the whole training state; a restarted `fit` resumes exactly.

    Keras' `BackupAndRestore` saves the weights and the epoch, but not the
    state of the other callbacks; its integer `save_freq` restarts a
    half-done epoch from its first batch; and it overwrites its one weights
    file in place, so a run killed while that file is written cannot start
    again. This drop-in replacement saves, at the end of every epoch (or
    every `save_freq` optimizer updates, in the middle of an epoch):

    - the model's and the optimizer's variables, which include the step
      count, the learning rate and the running averages of
      `ExponentialMovingAverage` and `StochasticWeightAveraging`;
    - the state of every keras_trainopt callback in the same `fit` (decay
      callbacks, monitors' histories, `TrainingDoctor`'s findings, snapshot
      lists), found by itself: no need to list them;
    - the state of the model's random seed generators (which
      `save_weights` leaves out) and the global random states (Python,
      NumPy, Keras, torch) that decide dropout masks and the order of a
      shuffled epoch;
    - in the middle of an epoch, also the metrics' running totals and the
      callbacks' readings of the epoch so far.

    The epoch's backup is written after validation and after every other
    callback's `on_epoch_end` (its hooks run last, wherever it sits in the
    list), so a run stopped at any point after epoch N completes resumes at
    epoch N + 1. With `save_freq=N` a backup is also taken every N applied
    updates (as counted by the optimizer: with `steps_per_execution` or
    loss scaling, skipped updates do not count), before the next step; the
    restarted `fit` then resumes *in the middle of the epoch*, at the next
    batch: the batches already done are drawn from the data but not trained
    on. A SIGKILL costs at most N redone updates.

    A SIGTERM (the preemption notice of Kubernetes, SLURM and spot or
    preemptible machines) is handled by default: at the next step boundary
    the callback writes a backup, prints where the run will resume, and
    ends the process with exit code 143 (`SIGTERM_EXIT_CODE`) by raising
    `SystemExit`; the resumed run redoes no update. The previous SIGTERM
    handler is put back when `fit` ends.

    A resumed run ends with the same weights, averages, learning rate and
    callback state as an uninterrupted one (to float rounding), provided
    the batches come in the same order: `shuffle=False`; or arrays with
    `shuffle=True` (the order is restored on JAX and PyTorch; on
    TensorFlow call `keras.utils.set_random_seed` first); or a
    `PyDataset` or `tf.data` pipeline whose order per epoch is fixed.

    Each backup is one NumPy `.npz` file (a zip archive whose members carry
    CRC-32 checksums: a damaged file is detected on reading), written to a
    temporary name, fsynced and renamed; the previous backup is kept
    (`double_checkpoint=True`), so a kill at any instant leaves a complete
    backup. Keras' `.weights.h5` is not used: h5py crashes the process
    (SIGSEGV) when a write fails on a full disk. The newest backup that
    passes its checks is loaded; a damaged one is skipped with a warning
    naming it; if none is usable, an `OSError` lists every file and what is
    wrong with it. A backup is also written when a fresh `fit` starts, so
    even the first epoch has one to fall back to.

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
        >>> backup = kt.BackupAndRestore(tempfile.mkdtemp(), save_freq=3)
        >>> callbacks = [kt.StepDecay(0.1, 0.5, 2), monitor, backup]
        >>> class Preempted(keras.callbacks.Callback):  # stands in for a kill
        ...     def on_train_batch_end(self, batch, logs=None):
        ...         if self.model.optimizer.iterations == 5:
        ...             raise RuntimeError("preempted")
        >>> try:
        ...     model.fit(x, x.sum(axis=1), epochs=4, shuffle=False, verbose=0,
        ...               callbacks=callbacks + [Preempted()])
        ... except RuntimeError:
        ...     pass
        >>> _ = model.fit(x, x.sum(axis=1), epochs=4, shuffle=False, verbose=0,
        ...               callbacks=callbacks)  # resumes after update 3
        >>> backup.restored_epoch, backup.restored_step  # epoch 2, 1 step in
        (1, 1)
        >>> len(monitor.losses)  # 2 batches per epoch, each recorded once
        8

    Args:
        backup_dir: folder for the backups; used by this run alone. Deleted
            at the end of `fit` when `delete_checkpoint` is True.
        save_freq: `"epoch"`, or a positive integer N: a backup every N
            applied optimizer updates as well (resumed mid-epoch).
        double_checkpoint: keep the previous backup as well, to fall back to
            if the newest one is damaged (default True; Keras' default is
            False).
        delete_checkpoint: delete `backup_dir` when `fit` ends normally.
        handle_sigterm: on SIGTERM, back up at the next step boundary and
            end the process (exit code 143). Installed from the main thread
            only.

    Reference: `keras.callbacks.BackupAndRestore`;
    `tf.distribute.experimental.PreemptionCheckpointHandler` (SIGTERM at
    step boundaries); atomic replacement as in POSIX `rename(2)`.
    """

    SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for it

    def __init__(
        self,
        backup_dir: "str | os.PathLike",
        save_freq: "str | int" = "epoch",
        double_checkpoint: bool = True,
        delete_checkpoint: bool = True,
        handle_sigterm: bool = True,
    ) -> None:
        # a path, non-empty, and not an existing file
        backup_dir = validation.check_path("backup_dir", backup_dir)
        save_freq = _check_save_freq(save_freq)
        super().__init__(
            os.fspath(backup_dir),
            save_freq=save_freq,
            double_checkpoint=validation.check_bool(
                "double_checkpoint", double_checkpoint
            ),
            delete_checkpoint=validation.check_bool(
                "delete_checkpoint", delete_checkpoint
            ),
        )
        self.handle_sigterm = validation.check_bool(
            "handle_sigterm", handle_sigterm
        )
        self._lock = None
        self._running = None  # running_fit.RunningFit of the current fit
        self._edges = ()  # the head and tail callbacks added to its list
        self._watch = None  # preemption.SigtermWatch
        self._saved_position = None
        self._position = (0, 0)  # (epoch, steps of it done) at the last hook
        self._steps_since_backup = 0
        self._updates_at_backup = 0
        self._epoch_random = None  # global random state at the epoch's start
        self._pending = None  # a mid-epoch backup to put back at epoch begin
        self.restored_epoch = None
        self.restored_step = None

    def get_config(self) -> dict[str, Any]:
        return {
            "backup_dir": self.backup_dir,
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
            "handle_sigterm": self.handle_sigterm,
        }

    # -- Keras hooks ---------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if distribute.is_chief() and self._lock is None:  # else: a fit raised
            self._lock = dir_lock.claim(self.backup_dir, "`backup_dir`")
            atomic.remove_partial_files(self.backup_dir)
        self.restored_epoch = None
        self.restored_step = None
        self._pending = None
        self._epoch_random = None
        self._saved_position = None
        self._steps_since_backup = 0
        self._running = running_fit.find(self.model)
        self._attach()
        self._load_model()
        model = self.model
        self._updates_at_backup = training.applied_updates(model)
        if self.restored_epoch is None:
            # the starting point: a kill in the first epoch, or a damaged
            # first backup, still finds a backup to fall back to
            self._position = (
                model._initial_epoch
                or getattr(self._running, "initial_epoch", None)
                or 0,
                0,
            )
            self._save_model(*self._position)
        if self.handle_sigterm and self._running is not None:
            self._watch = preemption.SigtermWatch(model, self._running)
            self._watch.start()

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if not self._edges:  # no tail added: do its work here
            self._epoch_begun(epoch)

    def on_train_batch_begin(
        self, batch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if not self._edges:  # no head added: do its work here
            self._step_boundary(batch)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._current_epoch = epoch + 1  # as Keras' BackupAndRestore
        self._last_batch_seen = 0
        if not self._edges:
            self._epoch_done(epoch)

    # Keras' batch-end hook (its integer `save_freq`) is replaced by the
    # default, no-op one, which Keras recognises, so it still dispatches the
    # batch-end hooks of the other callbacks asynchronously (JAX, PyTorch):
    # mid-epoch backups are taken at batch *begin*, which Keras always calls
    # in line, before the step.
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        try:
            if not self.delete_checkpoint:
                if self._position != self._saved_position:
                    self._save_model(*self._position)
            elif self._lock is not None:
                for _, path in self._backups():
                    os.remove(path)
        finally:
            self._release()
            if self.restored_epoch is not None:
                # Keras never clears it: the next `fit` would start there too.
                self.model._initial_epoch = None

    # -- the work, run first (head) or last (tail) among the callbacks -------

    def _step_boundary(self, batch):
        """Before the step `batch` of the epoch: `batch` steps are done."""
        epoch, done = self._position
        self._last_batch_seen = batch  # as Keras' BackupAndRestore
        if batch > done:
            self._steps_since_backup += batch - done
        self._position = (epoch, batch)
        if self._watch is not None and self._watch.requested:
            self._preempted()
        if isinstance(self.save_freq, int) and batch > 0 and (
            self._steps_since_backup >= self.save_freq
        ):
            # the updates applied never exceed the steps run: read the
            # count (a device read) only when N updates may have happened
            updates = training.applied_updates(training.unsynced_model(self))
            if updates - self._updates_at_backup >= self.save_freq:
                self._save_model(epoch, batch)

    def _epoch_begun(self, epoch):
        """After every callback's `on_epoch_begin`, before the first step."""
        self._position = (epoch, 0)
        pending, self._pending = self._pending, None
        if pending is not None and pending["epoch"] == epoch:
            self._put_back_mid_epoch(pending)
            self._position = (epoch, pending["step"])
        else:
            self._epoch_random = training_state.global_random_state()

    def _epoch_done(self, epoch):
        """After validation and every other callback's `on_epoch_end`."""
        _, done = self._position
        steps = (self.params or {}).get("steps")
        if steps and int(steps) > done:
            self._steps_since_backup += int(steps) - done
        self._position = (epoch + 1, 0)
        preempted = self._watch is not None and self._watch.requested
        if self.save_freq == "epoch" or preempted:
            self._save_model(epoch + 1, 0)
        else:
            updates = training.applied_updates(training.unsynced_model(self))
            if updates - self._updates_at_backup >= self.save_freq:
                self._save_model(epoch + 1, 0)
        if preempted:
            self._preempted()

    def _preempted(self):
        """Ends the run after a SIGTERM, once the backup is written."""
        epoch, step = self._position
        if self._saved_position != self._position:
            self._save_model(epoch, step)
        where = f"epoch {epoch + 1}" + (
            f" after {step} of its steps" if step else " (from its start)"
        )
        self._release()
        message = (
            "\nBackupAndRestore: SIGTERM received; the training state is "
            f"backed up in {self.backup_dir}. Ending the run (exit code "
            f"{self.SIGTERM_EXIT_CODE}); run the same `fit` again to resume "
            f"at {where}."
        )
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(self.SIGTERM_EXIT_CODE)

    # -- attaching to the running fit ----------------------------------------

    def _attach(self):
        """Runs our step-boundary hook first and our epoch hooks last."""
        callback_list = getattr(self._running, "callback_list", None)
        if callback_list is None:
            self._edges = ()
            return
        others = [
            c for c in callback_list.callbacks
            if not (isinstance(c, _Edge) and c.owner is self)
        ]
        self._edges = (_Head(self), _Tail(self))
        # a new list: the `on_train_begin` loop now running goes on over
        # the old one
        callback_list.callbacks = [self._edges[0], *others, self._edges[1]]

    def _release(self):
        """Ends this fit's hold: lock, SIGTERM handler, edges, references."""
        try:
            if self._watch is not None:
                self._watch.stop()
        finally:
            self._watch = None
            dir_lock.release(self._lock)  # deletes the lock file
            if self.delete_checkpoint and self._lock is not None:
                with contextlib.suppress(OSError):  # the user's files stay
                    os.rmdir(self.backup_dir)
            self._lock = None
            callback_list = getattr(self._running, "callback_list", None)
            if callback_list is not None and self._edges:
                callback_list.callbacks = [
                    c for c in callback_list.callbacks if c not in self._edges
                ]
            self._edges = ()
            self._running = None

    # -- saving ----------------------------------------------------------------

    def _save_model(self, epoch=None, step=0):
        """Writes the backup of `epoch` completed epochs and `step` steps."""
        if epoch is None:  # Keras' signature: the epoch just completed
            epoch = self._current_epoch
        model = self.model
        training.sync_state(model)
        callback_list = getattr(self._running, "callback_list", None)
        flush = getattr(callback_list, "_flush_futures", None)
        if flush is not None:  # batch-end hooks still running in threads
            flush()
        siblings = self._siblings()
        if step:  # at a step boundary, before the others' batch hooks
            for callback in siblings.values():
                callback.finish_step_boundary()
        states = {name: callback.get_state() for name, callback in siblings.items()}
        epoch_states = {
            name: callback.get_epoch_state()
            for name, callback in siblings.items()
        } if step else {}
        updates = training.applied_updates(model)
        self._saved_position = (epoch, step)
        self._updates_at_backup = updates
        self._steps_since_backup = 0
        if not distribute.is_chief():
            return
        training_state.write_backup(
            training_state.backup_path(self.backup_dir, epoch, step),
            {"epoch": epoch, "step": step, "updates": updates},
            training_state.variables(model),
            states,
            metrics=list(model.metrics_variables) if step else [],
            epoch_states=epoch_states,
            random_state=(
                self._epoch_random if step and self._epoch_random is not None
                else training_state.global_random_state()
            ),
        )
        self._prune(keep=2 if self.double_checkpoint else 1)

    def _backups(self):
        """`[((epoch, step), path)]`, newest first."""
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
        problems, damaged = [], False
        for _, path in backups:
            try:
                state = training_state.read_backup(path)
                training_state.assign(
                    training_state.variables(self.model), state["variables"]
                )
                if state["step"]:
                    self._check_mid_epoch(state, path)
            except Exception as error:  # noqa: BLE001 - any damage: try older
                damaged |= isinstance(error, training_state.DamagedBackupError)
                problems.append(f"{path}: {error}")
                warnings.warn(
                    f"BackupAndRestore: skipping the unusable backup {path} "
                    f"({error}); trying an older one.",
                    stacklevel=2,
                )
                continue
            self._restore_callbacks(state["callbacks"])
            epoch, step = state["epoch"], state["step"]
            self.model._initial_epoch = epoch
            self.restored_epoch, self.restored_step = epoch, step
            self._current_epoch = epoch
            self._position = self._saved_position = (epoch, step)
            if step:
                self._pending = state
                running_fit.start_epoch_at(
                    self._running.epoch_iterator, step, f"the backup {path}"
                )
            elif state["random"] is not None:
                training_state.set_global_random_state(state["random"])
            return
        advice = (
            " The files are damaged (truncated, or failing their checksums) "
            "and training cannot resume from them."
            if damaged else ""
        )
        raise OSError(
            f"No usable backup in {self.backup_dir}: "
            + "; ".join(problems)
            + "."
            + advice
            + " Delete the folder to start training from scratch, or put "
            "back an intact copy of it."
        )

    def _check_mid_epoch(self, state, path):
        """Refuses a mid-epoch backup that this fit cannot resume exactly."""
        if self._running is None:
            raise ValueError(
                f"it was taken in the middle of epoch {state['epoch'] + 1} "
                f"(after {state['step']} steps), and resuming there needs "
                "Keras' `Model.fit` (this hook was not called by one)"
            )
        running_fit.build_metrics(self.model, self._running)
        if len(state["metrics"]) != len(self.model.metrics_variables):
            raise ValueError(
                f"it holds {len(state['metrics'])} metric variables, this "
                f"model has {len(self.model.metrics_variables)}: other "
                "compiled metrics"
            )
        if _unseeded_tf_shuffle(self._running):
            warnings.warn(
                f"BackupAndRestore: resuming {path} in the middle of an epoch "
                "with shuffle=True on TensorFlow without a global seed: the "
                "resumed epoch draws a new order, so its remaining batches "
                "are not the ones the interrupted run had left. Call "
                "`keras.utils.set_random_seed` before building the model (or "
                "use shuffle=False) for an exact resume.",
                stacklevel=4,
            )

    def _put_back_mid_epoch(self, state):
        """The resumed epoch's start: the state after its first steps."""
        model = self.model
        training.sync_state(model)
        training_state.assign(training_state.variables(model), state["variables"])
        training_state.assign(list(model.metrics_variables), state["metrics"])
        siblings = self._siblings()
        for name, callback in siblings.items():
            if name in state["callbacks"]:
                callback.set_state(state["callbacks"][name])
            if name in state["epoch_callbacks"]:
                callback.set_epoch_state(state["epoch_callbacks"][name])
        if state["random"] is not None:
            training_state.set_global_random_state(state["random"])
        self._epoch_random = state["random"]

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


class _Edge(keras.callbacks.Callback):
    """A hook of `BackupAndRestore` placed at one end of the callback list."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner


class _Head(_Edge):
    """First in the list: the step boundary, before any other batch hook."""

    def on_train_batch_begin(self, batch, logs=None):
        self.owner._step_boundary(batch)


class _Tail(_Edge):
    """Last in the list: after every other epoch hook (and validation)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.owner._epoch_begun(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.owner._epoch_done(epoch)


def _check_save_freq(save_freq):
    if isinstance(save_freq, str) and save_freq == "epoch":
        return save_freq
    if (
        isinstance(save_freq, (int, np.integer))
        and not isinstance(save_freq, bool)
        and save_freq > 0
    ):
        return int(save_freq)
    raise ValueError(
        "`save_freq` must be 'epoch' or a positive integer (a number of "
        f"optimizer updates). Received: save_freq={save_freq!r}"
    )


def _unseeded_tf_shuffle(running):
    """Whether the epoch order is TensorFlow's unseeded array shuffle."""
    if keras.backend.backend() != "tensorflow" or not running.shuffle:
        return False
    adapter = getattr(running.epoch_iterator, "data_adapter", None)
    if type(adapter).__name__ != "ArrayDataAdapter":
        return False
    # `context.global_seed()` reads the seed that `tf.random.set_seed` set;
    # `tf.compat.v1.get_seed` would also advance the op-seed counter, and
    # so change the seeds of later random ops
    from tensorflow.python.eager import context

    return context.global_seed() is None
