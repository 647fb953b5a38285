"""Measuring one real optimizer update from inside the compiled train step.

A callback only sees the weights between *executions* of the train function,
and with `steps_per_execution = s` an execution applies `s` updates. To
measure exactly one update, the probe registers an `around` hook
(`apply_hooks`): on every update whose index `t` (updates already applied) is
a multiple of `every`, the compiled step copies the trainable weights, applies
the update, and stores `||w_after - w_before|| / ||w_before||` per weight in a
vector variable, with `t + 1` (the step count after the update) beside it.
Other updates run untouched: the copy happens only inside the measuring branch
of an `ops.cond`.

It runs on the TensorFlow and PyTorch backends. On JAX the update runs
statelessly inside `jax.jit` and the probe's variables are not part of the
optimizer's state, so the probe refuses clearly.
"""

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import optimizers


class UpdateProbe:
    """Measures every `every`-th update of a compiled model."""

    def __init__(self, model, every):
        backend = keras.backend.backend()
        if backend not in ("tensorflow", "torch"):
            raise NotImplementedError(
                "UpdateRatioLogger measures updates inside the train step, "
                "which is supported on the TensorFlow and PyTorch backends; "
                f"the {backend!r} backend applies updates statelessly inside "
                "jax.jit. Set KERAS_BACKEND=tensorflow or torch to use it."
            )
        self.model = model
        self.every = every
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError(
                "UpdateRatioLogger: the model has no trainable weights."
            )
        self._ratios = keras.Variable(
            np.zeros(len(self.variables), "float32"), trainable=False,
            name="update_ratios",
        )
        self._step = keras.Variable(0, dtype="int64", trainable=False,
                                    name="update_ratio_step")
        self._hook = apply_hooks.Hook(around=self._around)
        self._installed = False

    def _around(self, apply):
        optimizer = optimizers.unwrap(self.model.optimizer)

        def measured_apply(grads, trainable_variables=None):
            def measured():
                before = [ops.copy(v.value) for v in self.variables]
                apply(grads, trainable_variables)
                ratios = [
                    ops.sqrt(ops.sum(ops.square(v.value - b)))
                    / ops.sqrt(ops.sum(ops.square(b)))
                    for v, b in zip(self.variables, before)
                ]
                self._ratios.assign(ops.cast(ops.stack(ratios), "float32"))
                # The step count after the update: t + 1.
                self._step.assign(ops.cast(optimizer.iterations, "int64"))
                return ops.convert_to_tensor(True)

            def plain():
                apply(grads, trainable_variables)
                return ops.convert_to_tensor(False)

            # `t`, the updates applied before this one, decides.
            t = optimizer.iterations
            ops.cond(ops.equal(ops.mod(t, self.every), 0), measured, plain)

        return measured_apply

    def install(self):
        if not self._installed:
            apply_hooks.add(self.model, self._hook)
            self._installed = True

    def uninstall(self):
        if self._installed:
            apply_hooks.remove(self.model, self._hook)
            self._installed = False

    def read(self):
        """`(step, ratios)` of the latest measured update (step 0: none yet)."""
        step = int(self._step)
        return step, np.asarray(ops.convert_to_numpy(self._ratios), "float64")
