"""The driver shared by the weight-averaging callbacks (EMA, SWA).

Both keep a running average of the trainable weights and update it with one
rule, `average += c * (weight - average)` (`averaging.formulas`); they differ
in the coefficient `c` and in which updates are averaged. The update runs
*inside the compiled train step*, right after the optimizer's update
(`_internal.apply_hooks`), so it costs a few array operations per step
instead of a host round trip, is exact with `steps_per_execution > 1`, and
works under JAX, where the step is a pure function.

The average, the number of averaged updates and the number of skipped ones
live in variables attached to the optimizer during `fit`
(`_internal.optimizers`): `keras.callbacks.BackupAndRestore` saves and
restores them with the optimizer, so an interrupted run resumes to the same
average with no extra argument.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.averaging import batchnorm


class _AverageState:
    """The variables of one average, aligned with the trainable weights."""

    def __init__(self, model, name, extra):
        self.model = model
        self.sources = list(model.trainable_variables)
        self.average = [
            optimizers.add_state_variable(
                model, v, name=f"{name}_{v.path.replace('/', '_')}"
            )
            for v in self.sources
        ]
        for average, source in zip(self.average, self.sources):
            average.assign(ops.copy(source.value))  # JAX: a buffer of its own
        self.num_averaged = optimizers.add_state_variable(
            model, name=f"{name}_num_averaged"
        )
        self.num_skipped = optimizers.add_state_variable(
            model, name=f"{name}_num_skipped"
        )
        self.extra = extra(model)  # a subclass's own step variables

    @property
    def updated(self):
        """What the in-step update writes."""
        return [*self.average, self.num_averaged, self.num_skipped]

    @property
    def variables(self):
        """Everything kept in the optimizer."""
        return [*self.updated, *self.extra]


class WeightAverageCallback(keras.callbacks.Callback):
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
            end; needs `apply_at_end=True`.
        verbose: 1 to print what the callback does at train end.
    """

    # the name of this average's variables in the optimizer
    state_name = "average"

    def __init__(
        self,
        *,
        validate_with_average=False,
        apply_at_end=True,
        batchnorm_data=None,
        verbose=0,
    ):
        super().__init__()
        self.validate_with_average = validation.check_bool(
            "validate_with_average", validate_with_average
        )
        self.apply_at_end = validation.check_bool("apply_at_end", apply_at_end)
        if batchnorm_data is not None and not apply_at_end:
            raise ValueError(
                "`batchnorm_data` recomputes BatchNorm statistics for the "
                "average at train end, so it needs apply_at_end=True. "
                "Received: apply_at_end=False"
            )
        if batchnorm_data is not None and (
            isinstance(batchnorm_data, (str, bytes))
            or not (
                hasattr(batchnorm_data, "__array__")
                or hasattr(batchnorm_data, "__iter__")
            )
        ):
            raise TypeError(
                "`batchnorm_data` must be an array or an iterable of input "
                f"batches. Received: batchnorm_data={batchnorm_data!r} (of "
                f"type {type(batchnorm_data).__name__})"
            )
        self.batchnorm_data = batchnorm_data
        self.verbose = validation.check_int("verbose", verbose, low=0)
        self._state = None
        self._pending_state = None  # from set_state before the model is known
        self._hook = None  # made at the first fit (subclasses are set up)
        self._hook_model = None
        self._in_fit = False
        self._swapped_out = None  # raw trainable weights while swapped
        self._raw_at_end = None  # model.weights before the average went in
        self._applied = None  # the trainable weights put in at train end

    # -- what subclasses define ---------------------------------------------

    def _due(self, iterations):
        """Inside the step: whether the update that made `iterations` counts.

        Returns a boolean tensor, or `None` for "every update".
        """
        return None

    def _coefficient(self, num_averaged):
        """Inside the step: `c` for the next term, given the terms so far."""
        raise NotImplementedError

    def _extra_state(self, model):
        """Creates more variables for the step to read; returns them."""
        return []

    def _uses_before_hook(self):
        """Whether `_before_update_in_step` runs before every update."""
        return False

    def _before_update_in_step(self):
        """Inside the step, before the update (e.g. to set the rate)."""

    # -- the average ---------------------------------------------------------

    def averaged_weights(self):
        """The average as NumPy arrays aligned with `model.weights`.

        Trainable positions hold the average; non-trainable ones (BatchNorm
        statistics) hold the model's current values.
        """
        state = self._require_state("averaged_weights")
        training.sync_state(state.model)
        averages = {id(s): a for s, a in zip(state.sources, state.average)}
        return [
            _to_numpy(averages[id(v)] if id(v) in averages else v)
            for v in state.model.weights
        ]

    def raw_weights(self):
        """The weights training produced, aligned with `model.weights`.

        After a `fit` that applied the average at its end, these are the
        weights from just before; otherwise the model's current weights.
        """
        state = self._require_state("raw_weights")
        if self._raw_at_end is not None:
            return [np.array(w) for w in self._raw_at_end]
        training.sync_state(state.model)
        if self._swapped_out is not None:
            raw = dict(zip(map(id, state.sources), self._swapped_out))
            return [
                np.array(raw[id(v)]) if id(v) in raw else _to_numpy(v)
                for v in state.model.weights
            ]
        return training.copy_weights(state.model)

    @property
    def num_averaged(self):
        """How many weight snapshots the average holds."""
        return 0 if self._state is None else _to_int(self._state.num_averaged)

    @property
    def num_skipped(self):
        """Updates left out of the average because a weight was not finite."""
        return 0 if self._state is None else _to_int(self._state.num_skipped)

    def _require_state(self, method):
        if self._state is None:
            raise ValueError(
                f"{type(self).__name__}.{method}() has nothing to return yet: "
                "the average starts when `fit` is called with this callback."
            )
        return self._state

    # -- inside the train step ----------------------------------------------

    def _update_in_step(self):
        self._update(self._due(self._iterations()))

    def _update(self, due):
        """Adds the weights to the average where `due` (`None`: always).

        Inside the step, or eagerly between steps (after `sync_state`).
        """
        backend = keras.backend.backend()
        if backend == "jax" or distribute.in_replica_context():
            self._update_functional(self._state, due)
        elif backend == "torch":
            self._update_in_place(self._state, due)
        else:
            self._update_stateful(self._state, due)

    def _iterations(self):
        """Inside the step, after the update: the updates applied so far."""
        return optimizers.unwrap(self._state.model.optimizer).iterations

    def _terms(self, state):
        """The differences `w - average` and whether all of them are finite.

        Finiteness by `_all_finite` of the differences: they are finite
        exactly when the weights are (the averages always are).
        """
        deltas = [
            ops.subtract(w.value, a.value)
            for w, a in zip(state.sources, state.average)
        ]
        return deltas, _all_finite(deltas)

    def _update_stateful(self, state, due):
        """TensorFlow: assign inside the taken branch only."""

        def update():
            deltas, finite = self._terms(state)

            def average():
                c = self._coefficient(state.num_averaged)
                for a, d in zip(state.average, deltas):
                    a.assign_add(ops.multiply(ops.cast(c, a.dtype), d))
                state.num_averaged.assign_add(1)
                return ops.convert_to_tensor(True)

            def skip():
                state.num_skipped.assign_add(1)
                return ops.convert_to_tensor(False)

            return ops.cond(finite, average, skip)

        if due is None:
            update()
        else:
            ops.cond(due, update, lambda: ops.convert_to_tensor(False))

    def _update_in_place(self, state, due):
        """PyTorch: one fused in-place pass over the weights (`torch_ops`).

        Keras' eager PyTorch ops would launch four kernels per weight here
        (`_update_stateful`), each with a temporary. NaN or inf in any
        weight skips the update, as in `_terms`.
        """
        from keras_trainopt._internal import torch_ops

        if due is not None and not bool(ops.convert_to_numpy(due)):
            return
        weights = [w.value for w in state.sources]
        if torch_ops.all_finite(weights):
            c = ops.convert_to_numpy(self._coefficient(state.num_averaged))
            torch_ops.lerp_([a.value for a in state.average], weights, c)
            state.num_averaged.assign_add(1)
        else:
            state.num_skipped.assign_add(1)

    def _update_functional(self, state, due):
        """JAX and tf.distribute replicas: new values, assigned after (under
        JAX, the assignment is recorded).

        A due update is one select per weight, `where(finite, a + c (w - a),
        a)`, not a branch on `finite`: XLA fuses it into one pass that reads
        the weights and averages and writes the averages, as Keras' own
        `use_ema` does, where a branch would first write the differences
        `w - a` out as its operands. Finiteness is `_all_finite` of the
        weights.
        """
        variables = state.updated

        def unchanged():
            return [v.value for v in variables]

        def update():
            sources = [w.value for w in state.sources]
            finite = _all_finite(sources)
            n, skipped = state.num_averaged.value, state.num_skipped.value
            c = self._coefficient(n)
            averages = [
                ops.where(finite, a.value + ops.cast(c, a.dtype) * (w - a.value),
                          a.value)
                for a, w in zip(state.average, sources)
            ]
            return averages + [
                n + ops.cast(finite, n.dtype),
                skipped + ops.cast(ops.logical_not(finite), skipped.dtype),
            ]

        values = update() if due is None else ops.cond(due, update, unchanged)
        for variable, value in zip(variables, values):
            variable.assign(value)

    # -- swapping the average in and out -------------------------------------

    def _swap_in(self):
        if self._state is None or self._swapped_out is not None:
            return
        if self.num_averaged == 0:
            return  # nothing averaged yet (SWA before start_epoch)
        state = self._state
        training.sync_state(state.model)
        self._swapped_out = [_to_numpy(v) for v in state.sources]
        for source, average in zip(state.sources, state.average):
            source.assign(ops.copy(average.value))

    def _swap_out(self):
        if self._swapped_out is None:
            return
        for source, raw in zip(self._state.sources, self._swapped_out):
            source.assign(raw)
        self._swapped_out = None

    # -- state ---------------------------------------------------------------

    def get_state(self):
        """What must survive a restart, as NumPy arrays and ints.

        `BackupAndRestore` does not need this (it saves the average with the
        optimizer); it is for checkpointing the callback on its own.
        """
        state = self._require_state("get_state")
        training.sync_state(state.model)
        return {
            "average": [_to_numpy(a) for a in state.average],
            "num_averaged": self.num_averaged,
            "num_skipped": self.num_skipped,
        }

    def set_state(self, state):
        """Restores what `get_state` returned (before or after `fit` starts)."""
        if self._state is None:
            self._pending_state = state
            return
        own = self._state
        if len(state["average"]) != len(own.average):
            raise ValueError(
                f"The state holds {len(state['average'])} averaged arrays but "
                f"the model has {len(own.average)} trainable weights."
            )
        for variable, value in zip(own.average, state["average"]):
            if tuple(np.shape(value)) != tuple(variable.shape):
                raise ValueError(
                    f"The averaged array for {variable.name} has shape "
                    f"{np.shape(value)}; the weight has shape {variable.shape}."
                )
            variable.assign(value)
        own.num_averaged.assign(int(state["num_averaged"]))
        own.num_skipped.assign(int(state["num_skipped"]))

    def get_config(self):
        """The constructor arguments (without `batchnorm_data`)."""
        return {
            "validate_with_average": self.validate_with_average,
            "apply_at_end": self.apply_at_end,
            "verbose": self.verbose,
        }

    # -- Keras hooks ---------------------------------------------------------

    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "optimizer", None) is None:
            return  # predict() on a model that was never compiled
        if self._state is not None and self._state.model is model:
            self._check_same_weights(model)
        else:
            # Before any on_train_begin, hence before BackupAndRestore loads:
            # the variables it restores must exist, in a fixed order.
            optimizers.build_optimizer(model)
            self._state = _AverageState(
                model, self.state_name, self._extra_state
            )
            self._raw_at_end = self._applied = None
            if self._pending_state is not None:
                self.set_state(self._pending_state)
                self._pending_state = None
        optimizers.attach_state_variables(model.optimizer, self._state.variables)

    def _check_same_weights(self, model):
        now = [id(v) for v in model.trainable_variables]
        if now != [id(v) for v in self._state.sources]:
            raise ValueError(
                f"The model's trainable weights changed since "
                f"{type(self).__name__} started averaging them (a layer was "
                "frozen or unfrozen, or layers were added). Use a new "
                f"{type(self).__name__} for the new set of weights."
            )

    def on_train_begin(self, logs=None):
        self._in_fit = True
        self._swap_out()
        self._restore_raw_after_apply()
        self._remove_hook()  # left over by a fit that raised
        if self._hook is None:
            self._hook = apply_hooks.Hook(
                before=(
                    self._before_update_in_step
                    if self._uses_before_hook()
                    else None
                ),
                after=self._update_in_step,
            )
        apply_hooks.add(self.model, self._hook)
        self._hook_model = self.model

    def _restore_raw_after_apply(self):
        """A new `fit` continues from the raw weights, not the average.

        Only if the model still holds exactly what the last `fit` put in:
        weights the user loaded since are left alone.
        """
        if self._applied is None:
            return
        current = [_to_numpy(v) for v in self._state.sources]
        if all(np.array_equal(a, b) for a, b in zip(current, self._applied)):
            for variable, value in zip(self.model.weights, self._raw_at_end):
                variable.assign(value)
        self._applied = self._raw_at_end = None

    def on_train_end(self, logs=None):
        self._remove_hook()
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
        self._raw_at_end = training.copy_weights(state.model)
        for source, average in zip(state.sources, state.average):
            source.assign(ops.copy(average.value))
        if self.batchnorm_data is not None:
            batchnorm.recompute_batchnorm_statistics(
                state.model, self.batchnorm_data
            )
        self._applied = [_to_numpy(v) for v in state.sources]
        if self.verbose:
            print(
                f"\n{type(self).__name__}: the model now holds the average of "
                f"{self.num_averaged} weight snapshots "
                f"({self.num_skipped} skipped as non-finite)"
                + (
                    "; BatchNorm statistics recomputed."
                    if self.batchnorm_data is not None
                    else "."
                ),
                flush=True,
            )

    def _remove_hook(self):
        if self._hook_model is not None:
            apply_hooks.remove(self._hook_model, self._hook)
            self._hook_model = None

    def _detach(self):
        if self._state is not None and self.model.optimizer is not None:
            optimizers.detach_state_variables(
                self.model.optimizer, self._state.variables
            )

    def on_test_begin(self, logs=None):
        if self.validate_with_average or not self._in_fit:
            self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()
        if not self._in_fit:
            self._detach()

    def on_predict_begin(self, logs=None):
        self._swap_in()

    def on_predict_end(self, logs=None):
        self._swap_out()
        self._detach()


def _to_numpy(variable):
    return np.array(ops.convert_to_numpy(variable.value))


def _to_int(variable):
    return int(ops.convert_to_numpy(variable.value))


def _all_finite(tensors):
    """Whether every element of `tensors` is finite, by one sum over them.

    NaN and inf propagate through the sum, which is finite exactly when every
    element is, barring float32 overflow beyond ~1e32 (diverged too).
    """
    return ops.isfinite(ops.sum(ops.stack([ops.sum(t) for t in tensors])))
