"""Measuring one real optimizer update from inside the compiled train step.

A callback only sees the weights between *executions* of the train function,
and with `steps_per_execution = s` an execution applies `s` updates. To
measure exactly one update, the probe registers an `around` hook
(`apply_hooks`): on every update whose index `t` (updates already applied) is
a multiple of `every`, the compiled step copies the trainable weights, applies
the update, and computes `||w_after - w_before|| / ||w_before||` per weight.
Other updates run untouched: the copy happens only inside the measuring branch
of an `ops.cond`. PyTorch's eager step (no `jit_compile`) needs no branch on
a device value: it calls `apply` once per applied update, so the host counts
the updates from the optimizer's count read between steps (`count_from`, at
install and before each epoch's first step) and knows which one is measured.

The step writes each measurement into a row of a small ring buffer kept in
two variables, the ratios (`capacity x weights`) and the step count after the
update (`t + 1`) beside them, at row `(t // every) % capacity`. The callback
reads the buffer only now and then (`read_due`): a host read stalls the step
pipeline (on JAX it reads from JAX's live state, `training.read_live`, and
waits for the steps in flight). When an epoch's measurements fit in
`MAX_ROWS` rows it is read at the epoch's end only, else at most once per
`READ_SPAN` steps (`read_span`). The buffer holds every measurement that can
happen between two reads (`capacity`), so none is lost, whatever `every`
and `steps_per_execution`.

On JAX the update runs statelessly inside `jax.jit`, where only the model's
and the optimizer's variables can be written: there the two variables are
attached to the optimizer while the probe is installed (as scratch state,
which `BackupAndRestore` leaves out).

Under a `tf.distribute` strategy the two variables are made in the
strategy's scope (mirrored, aggregated "only first replica": every replica
measures the same update), and the update cannot run inside a branch: it
synchronizes the replicas (the gradient all-reduce, through `merge_call`).
So in a replica, and under JAX where a branch cannot write a variable
either, the update runs unconditionally, the measuring branch returns the
new buffer, and the variables are assigned after it. On JAX that needs no
explicit copy (arrays are immutable), but the pre-update weights stay alive
across the update as operands of the branch.

Even a branch that is not taken costs: on JAX the live pre-update weights
keep XLA from updating the weights in place, so it copies every one of them
first, at every step (6% of a 0.7 ms step on the CPU, `mlp128`; 12% with
`TrainingDoctor`'s other hooks); on TensorFlow the whole update runs inside
a conditional's functions (4%; 15% with the doctor's hooks). So where it
can (`HookOwner.host_picks_function`), the host picks the function
(`arm`): an execution that holds a measured update runs the function
traced with the probe, every other one a function traced without it (an
empty hook in its place), both cached (`apply_hooks.replace`).
"""

import math

import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import backend
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training

# Updates between two reads of the buffer, at least (unless an epoch ends).
READ_SPAN = 32
# The rows a buffer may have so that it is read only at an epoch's end.
MAX_ROWS = 64


def read_span(steps_per_epoch, every):
    """Steps between two reads of the buffer in the middle of an epoch.

    The whole epoch (no read before its end, so none waits for the steps in
    flight) when its measurements fit in `MAX_ROWS` rows, else `READ_SPAN`.
    """
    if steps_per_epoch and math.ceil(int(steps_per_epoch) / every) <= MAX_ROWS:
        return max(READ_SPAN, int(steps_per_epoch))
    return READ_SPAN


class UpdateProbe(apply_hooks.ScratchStateOwner):
    """Measures every `every`-th update of a compiled model.

    Args:
        model: the compiled model.
        every: measure the updates whose index is a multiple of `every`.
        steps_per_execution: the model's; sizes the buffer.
        read_span: steps between two reads, at least (`read_span`); sizes
            the buffer.
    """

    def __init__(self, model, every, steps_per_execution=1,
                 read_span=READ_SPAN):
        self.model = model
        self.every = every
        self.steps_per_execution = steps_per_execution
        self.read_span = read_span
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError(
                "UpdateRatioLogger: the model has no trainable weights."
            )
        # Reads come at the first hook call at least `read_span` updates
        # after the previous read, so at most read_span + s - 1 updates
        # pass between two reads, and a window of w updates holds at most
        # ceil(w / every) measured ones.
        self.capacity = math.ceil(
            (read_span + steps_per_execution) / every
        )
        self._jax = backend.is_jax()
        self._torch = backend.torch_ops()  # PyTorch's fused ops, or None
        # In the strategy's scope: a variable written in the step must be
        # mirrored (a TPU has no other kind).
        self._ratios = optimizers.add_state_variable(
            model, shape=(self.capacity, len(self.variables)),
            dtype="float32", name="update_ratios", backed_up=False,
        )
        self._steps = optimizers.add_state_variable(
            model, shape=(self.capacity,), dtype="int32",
            name="update_ratio_steps", backed_up=False,
        )
        self._hook = apply_hooks.Hook(around=self._around)
        self._idle_hook = apply_hooks.Hook()  # in its place, between measurements
        self._switches = False  # set at install
        self._delivered = 0  # the step of the newest measurement read
        self._eager = False  # set at install
        self._applies = 0  # `apply` calls, counted on the host when eager
        self._accumulation = 1  # batches per update, set at install

    # -- inside the step -----------------------------------------------------

    def _copies(self, tensors):
        if self._torch:
            return self._torch.copies(tensors)
        return [ops.copy(x) for x in tensors]

    def _ratios_of(self, before, after):
        if self._torch:
            return self._torch.relative_changes(before, after)
        return ops.stack([
            ops.sqrt(ops.sum(ops.square(a - b))) / ops.sqrt(ops.sum(ops.square(b)))
            for b, a in zip(before, after, strict=True)
        ])

    def _due(self, optimizer):
        """Before the update: whether it is measured.

        `t`, the number of updates applied before this one, decides.
        """
        return optimizers.both(
            ops.equal(ops.mod(optimizers.updates_in_step(optimizer),
                              self.every), 0),
            optimizers.applies_in_step(optimizer))

    def _with_measurement(self, optimizer, before, after):
        """The two buffers with the measurement of the update just applied.

        Read after the update, `iterations` is `t + 1`.
        """
        step = ops.cast(optimizers.updates_in_step(optimizer), "int32")
        row = ops.mod(ops.floor_divide(step - 1, self.every), self.capacity)
        ratios = ops.cast(self._ratios_of(before, after), "float32")
        return (
            ops.slice_update(
                self._ratios.value, (row, 0), ops.expand_dims(ratios, 0)
            ),
            ops.slice_update(
                self._steps.value, (row,), ops.expand_dims(step, 0)
            ),
        )

    def _around(self, apply):
        optimizer = optimizers.unwrap(self.model.optimizer)

        def measured_apply(grads, trainable_variables=None):
            if backend.step_kind() == backend.FUNCTIONAL:
                return self._measure_functionally(
                    optimizer, apply, grads, trainable_variables
                )

            def measured():
                before = self._copies([v.value for v in self.variables])
                apply(grads, trainable_variables)
                after = [v.value for v in self.variables]
                ratios, steps = self._with_measurement(optimizer, before, after)
                self._ratios.assign(ratios)
                self._steps.assign(steps)
                return ops.convert_to_tensor(True)

            def plain():
                apply(grads, trainable_variables)
                return ops.convert_to_tensor(False)

            if self._eager:
                # PyTorch's eager step calls `apply` once per step, so the
                # host knows whether this one is measured: no read of
                # `iterations` (on a GPU, a sync at every step). Under
                # gradient accumulation every k-th call updates.
                k = self._accumulation
                due = ((self._applies + 1) % k == 0
                       and self._applies // k % self.every == 0)
                self._applies += 1
                measured() if due else plain()
                return
            ops.cond(self._due(optimizer), measured, plain)

        return measured_apply

    def _measure_functionally(self, optimizer, apply, grads, trainable_variables):
        """`_around` under JAX or in a `tf.distribute` replica.

        No update in a branch, no assignment in a branch: the branch returns
        the new buffers, assigned after it.
        """
        due = self._due(optimizer)
        before = [v.value for v in self.variables]
        if not self._jax:  # JAX arrays are immutable: no copy needed
            before = self._copies(before)
        apply(grads, trainable_variables)
        after = [v.value for v in self.variables]
        ratios, steps = ops.cond(
            due,
            lambda: self._with_measurement(optimizer, before, after),
            lambda: (self._ratios.value, self._steps.value),
        )
        self._ratios.assign(ratios)
        self._steps.assign(steps)

    # -- between steps -------------------------------------------------------

    def install(self, fit=None):
        """Measures from the next step on; forgets earlier measurements.

        Args:
            fit: the `params` of the `fit` it measures (see
                `apply_hooks.HookOwner.install_hook`).
        """
        self.remove_hook()  # left over by a `fit` that raised
        self._ratios.assign(np.zeros(self._ratios.shape, "float32"))
        self._steps.assign(np.zeros(self._steps.shape, "int32"))
        self._delivered = 0
        self._eager = backend.runs_step_eagerly(self.model)
        self._accumulation = optimizers.accumulation_steps(self.model.optimizer)
        self._switches = self.host_picks_function(self.model)
        self.count_from(optimizers.get_applies(self.model.optimizer))
        self.install_scratch_hook(self._hook, fit=fit)

    @property
    def switches(self):
        """Whether the host picks the train function (`arm`): a traced step
        (JAX, TensorFlow), without loss scaling or a `tf.distribute`
        strategy."""
        return self._switches

    def prepare(self):
        """Between steps, at an epoch's first one, when `switches`: builds
        the train functions with and without the probe, so that `arm` finds
        both in the middle of the epoch. (Under a JAX distribution Keras
        builds one from the variables' layouts, and in the middle of an
        epoch the variables are purged: their values live in the step.)"""
        entry = self._installed_entry
        if entry is None:
            return
        current = entry.hook
        self.swap_hook(self._idle_hook if current is self._hook else self._hook)
        self.swap_hook(current)

    def arm(self, first_update, updates):
        """Between steps, when `switches`: picks the next execution's function.

        Args:
            first_update: the index of the execution's first update (the
                updates applied before it).
            updates: the updates it may apply (`steps_per_execution`).
        """
        last = first_update + updates - 1
        due = last // self.every * self.every >= first_update
        self.swap_hook(self._hook if due else self._idle_hook)

    @property
    def counts_on_host(self):
        """Whether the step counts the updates on the host (`count_from`)."""
        return self._eager

    def count_from(self, applies):
        """Between steps: the optimizer's `apply` ran `applies` times
        (`training.applied_calls`; a restore may change it). An eager
        PyTorch step counts on from there on the host."""
        self._applies = int(applies)

    def uninstall(self):
        """Stops measuring."""
        self.remove_hook()

    @property
    def scratch_variables(self):
        """The buffer (attached to the optimizer's state on JAX)."""
        return [self._ratios, self._steps]

    def read_due(self, updates_since_read, measured_since_read):
        """Whether a caller should `read` now.

        Args:
            updates_since_read: updates run since the previous read, at
                most (steps run: a skipped loss-scaled step counts too).
            measured_since_read: whether one of them may have been measured.
        """
        return measured_since_read and updates_since_read >= self.read_span

    def get_state(self):
        """The buffers and the newest step read (a mid-epoch backup).

        The buffers are scratch state, not in the backups between epochs:
        they hold measurements not yet read only in the middle of one.
        """
        steps, ratios = training.read_live(self.model, [self._steps, self._ratios])
        return {"steps": steps, "ratios": ratios, "delivered": self._delivered}

    def set_state(self, state):
        """Puts back what `get_state` returned (between steps)."""
        self._steps.assign(state["steps"])
        self._ratios.assign(state["ratios"])
        self._delivered = int(state["delivered"])

    def read(self):
        """`[(step, ratios), ...]` measured since the previous read, in order.

        `step` is the optimizer's step count after the measured update.
        """
        steps, ratios = training.read_live(self.model, [self._steps, self._ratios])
        steps, ratios = steps.astype("int64"), ratios.astype("float64")
        new = [i for i in np.argsort(steps) if steps[i] > self._delivered]
        if new:
            self._delivered = int(steps[new[-1]])
        return [(int(steps[i]), ratios[i]) for i in new]
