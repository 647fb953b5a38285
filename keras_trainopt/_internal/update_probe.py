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

On TensorFlow and PyTorch the result lands in two variables that the
callback reads. On JAX the update runs statelessly inside `jax.jit`, where a
variable outside the optimizer's state cannot be written; there the measuring
branch hands the ratios to the host with `jax.debug.callback` instead (it runs
only for measured updates), and `read` drains what arrived.

Under a `tf.distribute` strategy the two variables are made in the
strategy's scope (mirrored, aggregated "only first replica": every replica
measures the same update), and the update cannot run inside a branch: it
synchronizes the replicas (the gradient all-reduce, through `merge_call`).
So in a replica the weights are copied before *every* update, the update
runs unconditionally, only the ratios are computed in the measuring branch,
and the variables are assigned after it.
"""

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import distribute
from keras_trainopt._internal import optimizers


class UpdateProbe:
    """Measures every `every`-th update of a compiled model."""

    def __init__(self, model, every):
        self.model = model
        self.every = every
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError(
                "UpdateRatioLogger: the model has no trainable weights."
            )
        self._jax = keras.backend.backend() == "jax"
        self._arrived = []  # (step, ratios) handed over by jax.debug.callback
        if not self._jax:
            # In the strategy's scope: a variable written in the step must be
            # mirrored (a TPU has no other kind).
            with distribute.variable_scope(model):
                self._ratios = keras.Variable(
                    np.zeros(len(self.variables), "float32"), trainable=False,
                    aggregation="only_first_replica", name="update_ratios",
                )
                self._step = keras.Variable(
                    0, dtype="int64", trainable=False,
                    aggregation="only_first_replica", name="update_ratio_step",
                )
        self._hook = apply_hooks.Hook(
            around=self._around_jax if self._jax else self._around
        )
        self._installed = False

    def _ratios_of(self, before, after):
        return ops.stack([
            ops.sqrt(ops.sum(ops.square(a - b))) / ops.sqrt(ops.sum(ops.square(b)))
            for b, a in zip(before, after)
        ])

    def _around_jax(self, apply):
        import jax

        optimizer = optimizers.unwrap(self.model.optimizer)

        def receive(step, ratios):
            self._arrived.append((int(step), np.asarray(ratios, "float64")))

        def measured_apply(grads, trainable_variables=None):
            t = optimizer.iterations.value
            before = [v.value for v in self.variables]  # immutable: no copy
            apply(grads, trainable_variables)
            after = [v.value for v in self.variables]

            def report(before, after):
                jax.debug.callback(receive, t + 1, self._ratios_of(before, after))

            jax.lax.cond(
                t % self.every == 0, report, lambda before, after: None,
                before, after,
            )

        return measured_apply

    def _around(self, apply):
        optimizer = optimizers.unwrap(self.model.optimizer)

        def measured_apply(grads, trainable_variables=None):
            if distribute.in_replica_context():
                return self._measure_in_replica(
                    optimizer, apply, grads, trainable_variables
                )

            def measured():
                before = [ops.copy(v.value) for v in self.variables]
                apply(grads, trainable_variables)
                after = [v.value for v in self.variables]
                self._ratios.assign(
                    ops.cast(self._ratios_of(before, after), "float32")
                )
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

    def _measure_in_replica(self, optimizer, apply, grads, trainable_variables):
        """`_around` in a `tf.distribute` replica: no update in a branch."""
        due = ops.equal(ops.mod(optimizer.iterations, self.every), 0)
        before = [ops.copy(v.value) for v in self.variables]
        apply(grads, trainable_variables)
        after = [v.value for v in self.variables]
        ratios = ops.cond(
            due,
            lambda: ops.cast(self._ratios_of(before, after), "float32"),
            lambda: self._ratios.value,
        )
        step = ops.where(
            due, ops.cast(optimizer.iterations, "int64"), self._step.value
        )
        self._ratios.assign(ratios)
        self._step.assign(step)

    def install(self):
        if not self._installed:
            apply_hooks.add(self.model, self._hook)
            self._installed = True

    def uninstall(self):
        if self._installed:
            apply_hooks.remove(self.model, self._hook)
            self._installed = False

    def read(self, wait=False):
        """`[(step, ratios), ...]` measured since the previous read.

        `step` is the optimizer's step count after the measured update. With
        `wait=True` (at epoch end) JAX's pending host callbacks are waited
        for first.
        """
        if self._jax:
            if wait:
                import jax

                jax.effects_barrier()
            arrived, self._arrived = self._arrived, []
            return arrived
        step = int(ops.convert_to_numpy(self._step))
        if step == 0:
            return []
        return [(step, np.asarray(ops.convert_to_numpy(self._ratios), "float64"))]
