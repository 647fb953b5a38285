"""The driver shared by the weight-averaging callbacks (EMA, SWA).

The average itself, its in-step update and the swapping live in
`averaging.in_step`; this module decides when they run in a `fit`, what the
user sees (`averaged_weights`, `raw_weights`, `get_state`) and what happens at
train end.

Several averagers on one model compose by the rule of
`averaging.composition`: each averages the trained weights, and the one
later in the list replaces the earlier one wherever an average goes in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import console
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import running_fit
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.averaging import batchnorm
from keras_trainopt.averaging import composition
from keras_trainopt.averaging import in_step

# `batchnorm_data`: an array, a list or dict of arrays, or an iterable of
# batches (`tf.data.Dataset`, `keras.utils.PyDataset`, a generator), as
# `recompute_batchnorm_statistics` takes; no static type covers them all.
BatchNormData = Any
# A backend tensor (TensorFlow, JAX or PyTorch): Keras names no type for it.
Tensor = Any

class WeightAverageCallback(apply_hooks.HookOwner, keras.callbacks.Callback):
    """Keeps a running average of the trainable weights during `fit`.

    Subclasses say which updates are averaged (`_due`) and with what weight
    (`_coefficient`); this class runs the average in the train step and owns
    everything around it: swapping the average in for validation, `evaluate`
    and `predict`, putting it in the model at the end, recomputing BatchNorm
    statistics, and the state that survives a restart.

    Only trainable weights are averaged. Non-trainable variables (BatchNorm
    moving mean and variance, counters) are not: wherever the average is used
    they keep their current values, as with Keras' `use_ema`. BatchNorm
    statistics gathered for the raw weights are slightly off for the average;
    pass `batchnorm_data` to recompute them exactly at train end
    (`keras_trainopt.recompute_batchnorm_statistics`).

    With several averagers in one list (EMA and SWA), each averages the
    trained weights; the one later in the list wins wherever both would put
    their average in the model: the model holds its average at train end and
    for validation when both `validate_with_average`. `raw_weights()` of
    both returns the trained weights, and the next `fit` continues from them.
    Pass `apply_at_end=False` to the one whose average should not end up in
    the model.

    Keras' `EarlyStopping(restore_best_weights=True)` also sets the weights
    at train end: the trained weights of its best epoch, never an average
    (with `validate_with_average=True` that epoch is the one whose *average*
    validated best). With `apply_at_end=True` the later of the two in the
    list wins, and a `UserWarning` at train begin says which; pass
    `apply_at_end=False` to end on EarlyStopping's weights, or
    `restore_best_weights=False` to end on the average.

    Args:
        validate_with_average: during `fit`, evaluate the validation data with
            the average swapped in (and swapped back after, bit for bit).
            Outside `fit`, `model.evaluate(..., callbacks=[cb])` and
            `model.predict(..., callbacks=[cb])` always use the average.
        apply_at_end: at train end, leave the average in the model. The raw
            weights stay available from `raw_weights()`, and a later `fit`
            with this callback continues from them.
        batchnorm_data: training inputs (an array, a list or dict of arrays,
            or an iterable of batches such as a `tf.data.Dataset`) to
            recompute BatchNorm statistics for the averaged weights at train
            end (`recompute_batchnorm_statistics`, with `skip_frozen=True`:
            every BatchNormalization with `trainable=True`, nested ones
            included); needs `apply_at_end=True`. What can be checked is
            checked at train begin (its type and shape, and for arrays and
            datasets that the model can be run on it). A generator is used
            up by the first `fit`; pass a dataset or arrays to reuse it.
        batchnorm_steps: use at most this many batches of `batchnorm_data`
            (int >= 1), or `None` for all of it. Required for an infinite
            (`.repeat()`) `tf.data.Dataset`; a generator that never ends
            needs it too (its length cannot be known, so it is not refused).
        verbose: 1 to print what the callback does at train end.
        skip_non_finite: leave out of the average, and count in
            `num_skipped`, an update whose weights are not all finite, so
            that a NaN never enters it. The check is one sum over the weights
            per averaged update (on TensorFlow a branch in the step, on
            PyTorch a device read); `False` drops it, as Keras' `use_ema`
            has none: then a non-finite update makes the average non-finite
            for good.
    """

    # the name of this average's variables in the optimizer
    state_name = "average"

    def __init__(
        self,
        *,
        validate_with_average: bool = False,
        apply_at_end: bool = True,
        batchnorm_data: BatchNormData = None,
        batchnorm_steps: int | None = None,
        verbose: int = 0,
        skip_non_finite: bool = True,
    ) -> None:
        super().__init__()
        self.skip_non_finite = validation.check_bool(
            "skip_non_finite", skip_non_finite
        )
        self.validate_with_average = validation.check_bool(
            "validate_with_average", validate_with_average
        )
        self.apply_at_end = validation.check_bool("apply_at_end", apply_at_end)
        batchnorm.check_callback_arguments(
            batchnorm_data, batchnorm_steps, apply_at_end
        )
        self.batchnorm_data = batchnorm_data
        self.batchnorm_steps = batchnorm_steps
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self._state = None  # an `in_step.InStepAverage`, made in set_model
        self._extra: list[keras.Variable] = []  # a subclass's step variables
        # from set_state before the model is known
        self._pending_state: Mapping[str, Any] | None = None
        # made at the first fit (subclasses are set up)
        self._hook: apply_hooks.Hook | None = None
        self._in_fit = False
        self._raw_at_end = None  # model.weights before the average went in
        self._applied = None  # the trainable weights put in at train end

    # -- what subclasses define ---------------------------------------------

    def _due(self, iterations: Tensor) -> Tensor | None:
        """Inside the step: whether the update that made `iterations` counts.

        Returns a boolean tensor, or `None` for "every update".
        """
        return None

    def _due_on_host(self, applied: int) -> bool:
        """`_due` decided on the host, from the updates applied so far (this
        one included): PyTorch's eager step (`InStepAverage.counts_on_host`).
        """
        return True

    def _coefficient(self, num_averaged: Tensor, xp: Any = ops) -> Tensor:
        """`c` for the next term, given the terms so far: inside the step
        (`xp=keras.ops`), or on the host (`xp=numpy`, `num_averaged` a
        `float32` scalar)."""
        raise NotImplementedError

    def _extra_state(self, model: keras.Model) -> list[keras.Variable]:
        """Creates more variables for the step to read; returns them."""
        return []

    def _sets_learning_rate(self) -> bool:
        """Whether `_before_update_in_step` sets the rate before each update."""
        return False

    def _before_update_in_step(self) -> None:
        """Inside the step, before the update: sets the learning rate."""

    # -- the average ---------------------------------------------------------

    def averaged_weights(self) -> list[np.ndarray]:
        """The average as NumPy arrays aligned with `model.weights`.

        Trainable positions hold the average; non-trainable ones (BatchNorm
        statistics) hold the model's current values.
        """
        state = self._require_state("averaged_weights")
        training.sync_state(state.model)
        averages = dict(zip(map(id, state.sources), state.average_arrays(),
                            strict=True))
        return [averages[id(v)] if id(v) in averages else _to_numpy(v)
                for v in state.model.weights]

    def raw_weights(self) -> list[np.ndarray]:
        """The weights training produced, aligned with `model.weights`.

        After a `fit` that applied an average at its end (this one's, or
        another averager's on the same model), these are the weights from
        just before; otherwise the model's current weights.
        """
        state = self._require_state("raw_weights")
        holder = composition.HOLDER.get(state.model)
        if self._raw_at_end is None and holder is not None and holder.holds(
            state.model
        ):
            return [np.array(w) for w in holder._raw_at_end]
        if self._raw_at_end is not None:
            return [np.array(w) for w in self._raw_at_end]
        training.sync_state(state.model)
        raw = dict(zip(map(id, state.sources), state.raw_arrays(), strict=True))
        return [raw[id(v)] if id(v) in raw else _to_numpy(v)
                for v in state.model.weights]

    @property
    def num_averaged(self) -> int:
        """How many weight snapshots the average holds."""
        return 0 if self._state is None else self._state.counts()[0]

    @property
    def num_skipped(self) -> int:
        """Updates left out of the average because a weight was not finite."""
        return 0 if self._state is None else self._state.counts()[1]

    def _require_state(self, method):
        if self._state is None:
            raise ValueError(
                f"{type(self).__name__}.{method}() has nothing to return yet: "
                "the average starts when `fit` is called with this callback."
            )
        return self._state

    # -- inside the train step ----------------------------------------------

    def _update_in_step(self):
        state = self._state
        if state.counts_on_host:  # PyTorch's eager step: no device read
            applied = state.count_update()  # None: no update (accumulating)
            state.update(applied is not None and self._due_on_host(applied))
            return
        optimizer = optimizers.unwrap(state.model.optimizer)
        state.update(optimizers.both(
            self._due(optimizers.updates_in_step(optimizer)),
            optimizers.applied_in_step(optimizer)))

    # -- swapping the average in and out -------------------------------------

    def _swap_in(self):
        if self._state is None or self._state.swapped_in:
            return
        if self.num_averaged == 0:
            return  # nothing averaged yet (SWA before start_epoch)
        model = self._state.model
        other = composition.SWAPPED.get(model)
        if other is not None and other is not self:
            other._swap_out()  # replaced, not stacked: the raw weights stay
        training.sync_state(model)
        self._state.swap_in()
        composition.SWAPPED.set(model, self)

    def _swap_out(self):
        if self._state is not None:
            self._state.swap_out()
            composition.SWAPPED.release(self._state.model, self)

    # -- state ---------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """What must survive a restart, as NumPy arrays and ints.

        `BackupAndRestore` does not need this (it saves the average with the
        optimizer); it is for checkpointing the callback on its own.
        """
        state = self._require_state("get_state")
        training.sync_state(state.model)
        num_averaged, num_skipped = state.counts()
        return {
            "average": state.average_arrays(),
            "num_averaged": num_averaged,
            "num_skipped": num_skipped,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores what `get_state` returned (before or after `fit` starts)."""
        if self._state is None:
            self._pending_state = state
            return
        self._state.load(
            state["average"], state["num_averaged"], state["num_skipped"]
        )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (without `batchnorm_data`)."""
        return {
            "validate_with_average": self.validate_with_average,
            "apply_at_end": self.apply_at_end,
            "batchnorm_steps": self.batchnorm_steps,
            "verbose": self.verbose,
            "skip_non_finite": self.skip_non_finite,
        }

    # -- Keras hooks ---------------------------------------------------------

    def _variables(self):
        """Everything this callback keeps in the optimizer."""
        return [*self._state.variables, *self._extra]

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if getattr(model, "optimizer", None) is None:
            return  # predict() on a model that was never compiled
        validation.check_built(
            model, type(self).__name__, "averages the model's weights"
        )
        if self._state is not None and self._state.model is model:
            try:
                self._state.check_same_weights(model, type(self).__name__)
            except ValueError:
                composition.detach_all(model)  # an earlier averager attached
                raise
        else:
            # Before any on_train_begin, hence before BackupAndRestore loads:
            # the variables it restores must exist, in a fixed order.
            optimizers.build_optimizer(model)
            self._state = in_step.InStepAverage(
                model, self.state_name, self._coefficient,
                check_finite=self.skip_non_finite,
            )
            self._extra = self._extra_state(model)
            self._raw_at_end = self._applied = None
            if self._pending_state is not None:
                self.set_state(self._pending_state)
                self._pending_state = None
        composition.attach(model, self._variables())

    def _check_before_fit(self) -> None:
        """Subclasses refuse here what cannot work, before anything runs."""

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        try:
            self._check_before_fit()
            if self.batchnorm_data is not None:
                batchnorm.check_before_fit(
                    self.model, self.batchnorm_data, type(self).__name__
                )
        except Exception:
            composition.detach_all(self.model)  # a failed start: nothing left
            raise
        self._in_fit = True
        self._swap_out()
        self._restore_raw_after_apply()
        self._warn_if_early_stopping_restores()
        self._warn_if_optimizer_averages()
        if self._hook is None:
            self._hook = apply_hooks.Hook(
                before=(
                    self._before_update_in_step
                    if self._sets_learning_rate()
                    else None
                ),
                after=self._update_in_step,
            )
        self.install_hook(
            self.model, self._hook, fit=self.params,
            sets_learning_rate=self._sets_learning_rate(),
        )
        self._state.recount()

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        # before the epoch's first update, after any restore of the counts
        self._state.recount()

    def _restore_raw_after_apply(self):
        """A new `fit` continues from the raw weights, not the average.

        Only if the model still holds exactly what the last `fit` put in:
        weights the user loaded since are left alone.
        """
        if self._applied is None:
            self._raw_at_end = None
            return
        current = self._state.raw_arrays()
        if all(np.array_equal(a, b) for a, b in zip(current, self._applied,
                                                    strict=True)):
            for variable, value in zip(self.model.weights, self._raw_at_end,
                                       strict=True):
                variable.assign(value)
        self._applied = self._raw_at_end = None
        composition.HOLDER.release(self.model, self)

    def _warn_if_optimizer_averages(self):
        """Warns when the optimizer's own EMA (`use_ema=True`) is also put
        into the model at train end: Keras does it first, so ours wins."""
        optimizer = optimizers.unwrap(getattr(self.model, "optimizer", None))
        if not self.apply_at_end or not getattr(optimizer, "use_ema", False):
            return
        name = type(self).__name__
        warnings.warn(
            f"{name}(apply_at_end=True) and the optimizer's use_ema=True "
            "both put an average of the weights into the model at train "
            f"end; Keras puts the optimizer's in first and {name} then "
            f"replaces it, so the model ends on {name}'s average and the "
            f"optimizer's is kept up for nothing. Create "
            f"{type(optimizer).__name__} without use_ema=True, or pass "
            f"apply_at_end=False to {name} to end on the optimizer's "
            "average (`averaged_weights()` still gives this one).",
            stacklevel=2,
        )

    def _warn_if_early_stopping_restores(self):
        """Warns when Keras' EarlyStopping will also set the final weights."""
        if not self.apply_at_end:
            return
        callbacks = running_fit.callbacks(self.model)
        stoppers = [c for c in callbacks
                    if isinstance(c, keras.callbacks.EarlyStopping)
                    and c.restore_best_weights]
        if not stoppers or self not in callbacks:
            return
        name = type(self).__name__
        ours_last = callbacks.index(self) > callbacks.index(stoppers[-1])
        chosen = (
            "its best epoch, chosen by the validation of the average "
            "(validate_with_average=True)" if self.validate_with_average
            else "its best epoch"
        )
        warnings.warn(
            f"{name}(apply_at_end=True) and EarlyStopping("
            "restore_best_weights=True) both set the model's weights at "
            "train end; the later in `callbacks` wins: here "
            + (f"{name}, so the model will end on the average, not on "
               "EarlyStopping's best weights." if ours_last else
               "EarlyStopping, so the model will end on the trained weights "
               f"of {chosen}, not on an average.")
            + f" Pass apply_at_end=False to {name} to end on EarlyStopping's "
            f"weights (`averaged_weights()` still gives the average), or "
            "restore_best_weights=False to EarlyStopping to end on the "
            "average.",
            stacklevel=2,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.remove_hook()
        self._in_fit = False
        self._swap_out()
        if self.apply_at_end:
            if self.num_averaged > 0:
                self._apply_average()
            else:
                warnings.warn(
                    f"{type(self).__name__}: no weights were averaged during "
                    "this fit, so the model keeps its trained weights.",
                    stacklevel=2,
                )
        self._detach()

    def _apply_average(self):
        state = self._state
        model = state.model
        holder = composition.HOLDER.get(model)
        if holder is not None and holder is not self and holder.holds(model):
            # an earlier averager in the list put its average in: replace
            # it, and keep the trained weights it set aside as the raw ones
            self._raw_at_end = [np.array(w) for w in holder._raw_at_end]
            holder._applied = None
            for variable, value in zip(model.weights, self._raw_at_end, strict=True):
                variable.assign(value)  # the BatchNorm statistics of training
        else:
            self._raw_at_end = training.copy_weights(model)
        state.put_in()
        composition.HOLDER.set(model, self)
        recomputed = self.batchnorm_data is not None and (
            batchnorm.recompute_for_average(
                model, self.batchnorm_data, self.batchnorm_steps,
                type(self).__name__,
            )
        )
        self._applied = state.raw_arrays()
        if self.verbose:
            console.print_msg(
                f"\n{type(self).__name__}: the model now holds the average of "
                f"{self.num_averaged} weight snapshots "
                f"({self.num_skipped} skipped as non-finite)"
                + ("; BatchNorm statistics recomputed." if recomputed else ".")
            )

    def holds(self, model: keras.Model) -> bool:
        """Whether `model` still holds the average this put in at train end."""
        if self._applied is None or self._state is None:
            return False
        current = self._state.raw_arrays()
        return all(np.array_equal(a, b) for a, b in zip(current, self._applied,
                                                        strict=True))

    def _detach(self):
        if self._state is not None and self.model.optimizer is not None:
            optimizers.detach_state_variables(
                self.model.optimizer, self._variables()
            )

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.validate_with_average or not self._in_fit:
            self._swap_in()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._swap_out()
        if not self._in_fit:
            self._detach()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._swap_in()

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        self._swap_out()
        self._detach()


def _to_numpy(variable):
    return np.array(keras.ops.convert_to_numpy(variable.value))
