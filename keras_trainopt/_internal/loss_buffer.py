"""The batch loss, recorded inside the compiled train step for `LossMonitor`.

Reading the loss tracker between steps costs a device read per value (the
tracker's total and count, the step count, the learning rate): on
TensorFlow each is an eager op, and on JAX each waits for the steps
dispatched ahead (it drains the asynchronous queue). So the step records
its readings itself, and the monitor reads them now and then, in one go.

After every train step (`apply_hooks.Hook.after_step`, which on JAX runs
on the state the step returns: Keras updates the loss tracker there after
the optimizer's update), with `t` the optimizer's step count (updates
applied; an update that `LossScaleOptimizer` skips is not counted) and
`m` the step count at the previous reading:

    if t - m >= every:  write (t, tracker total, tracker count,
                               learning rate) into row r % capacity,
                        r += 1, m = t

So a reading ends every span of `every` applied updates, whatever
`steps_per_execution`; its loss is `(total - total') / (count - count')`
from the previous reading's `total'`, `count'` (the reader's position,
`training.BatchLossReader.advance`), and the learning rate is the one the
next update uses (a schedule's value at `t`). The epoch's last, shorter
span is read on the host at its end (`mark` then moves `m` there).

PyTorch's eager step decides on the host instead: one `apply` runs per
applied update, so the host counts `t` (and keeps `m` and `r`), read from
the variables once at each epoch's first step, and copies a due reading into
the buffer in place (`torch_ops.write_row`), with no read of the device.

The buffer is three variables: the rows of `(total, count)`, the rows of
the rate, and one of integers that holds the rows of `t` followed by `m` and
`r`. On JAX each variable is one more array in and out of every step,
about 2 us of a 1 ms `mlp128` step on a CPU (`benchmarks/state_arrays.py`),
so the integers share one (the totals cannot share with the rate: under a
strategy they are summed over the replicas). The variables are scratch
state (`BackupAndRestore` leaves them out; a mid-epoch backup saves them
through `get_state`). On JAX they are attached to the optimizer while
installed, as `UpdateProbe`'s buffer.
Under a `tf.distribute` strategy the totals are kept per replica and read
as their sum, like the tracker's own; the others are the same on every
replica.

The host reads the rows (`read`) in the middle of an epoch once at least
`READ_SPAN` steps and `MIN_READ_SECONDS` of wall time have passed since the
previous read, or `MAX_READ_SPAN` steps, or, on slow steps, `READ_SECONDS`
(`read_due`), and at each epoch's end; the buffer holds every reading that
can happen in between (`capacity`), so none is lost. A read costs about a
millisecond on a CPU (eager reads on TensorFlow; on JAX's CPU backend the
copy below waits for the step in flight, and the device then idles while
the host dispatches the next one): the time floor keeps reads to at most
ten a second, so on short steps (1-2 ms) they cost about 1% of the time
instead of 3%, at the price of a detection delay of a tenth of a second
rather than 32 steps. On JAX a read in the
middle of an epoch takes the copy of the buffer made at the previous read
and dispatches a new copy, so that it never waits for the steps in flight:
its readings arrive one read later.
"""

import math
import time

import numpy as np
from keras import ops

from keras_trainopt._internal import apply_hooks
from keras_trainopt._internal import backend
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal.update_probe import READ_SPAN

# Read at least this often (seconds) when steps are slow.
READ_SECONDS = 1.0
# Seconds between two reads in the middle of an epoch, at least (unless
# MAX_READ_SPAN steps have run).
MIN_READ_SECONDS = 0.1
# Steps after which a read is due whatever the time (sizes the buffer).
MAX_READ_SPAN = 256


class LossBuffer(apply_hooks.ScratchStateOwner):
    """Records a reading of the loss tracker every `every` applied updates.

    Args:
        model: the compiled model.
        every: applied updates per reading.
        steps_per_execution: the model's; sizes the buffer.

    Raises:
        ValueError: the model has no loss tracker.
    """

    def __init__(self, model, every, steps_per_execution=1):
        self.model = model
        self.every = every
        self.steps_per_execution = steps_per_execution
        self.tracker = training.loss_tracker(model)
        # A read comes at the latest at the first batch hook MAX_READ_SPAN
        # steps after the previous one: at most MAX_READ_SPAN + s - 1 steps
        # pass between two, and readings are `every` updates apart.
        self.capacity = math.ceil(
            (MAX_READ_SPAN + steps_per_execution) / every) + 1
        # Where the mark `m` and the row count `r` sit in `_counters`,
        # after the rows' steps.
        self._mark_at = self.capacity
        self._rows_at = self.capacity + 1
        add = optimizers.add_state_variable
        self._sums = add(
            model, shape=(self.capacity, 2), dtype="float32",
            name="loss_reading_sums", backed_up=False, per_replica_sum=True,
        )
        self._rates = add(
            model, shape=(self.capacity,), dtype="float32",
            name="loss_reading_rates", backed_up=False,
        )
        self._counters = add(
            model, shape=(self.capacity + 2,), dtype="int32",
            name="loss_reading_counters", backed_up=False,
        )
        self._jax = backend.is_jax()
        self._eager = False  # set at install
        self._torch = None  # PyTorch's in-place kernels, when eager
        # PyTorch's eager step: [`apply` calls, mark, rows] on the host
        self._host = None
        self._accumulation = 1  # batches per update, set at install
        self._hook = apply_hooks.Hook(after_step=self._record)
        self._eager_hook = apply_hooks.Hook(
            after=self._count_update, after_step=self._record_from_host)
        self._delivered = 0  # the step of the newest reading read
        self._behind = None  # on JAX, the copies made at the last read
        self._read_steps = 0  # steps run in the epoch at the last read
        self._read_time = 0.0

    @property
    def variables(self):
        return [self._sums, self._rates, self._counters]

    # -- inside the step -----------------------------------------------------

    def _with_reading(self, optimizer, step):
        """The variables' new values with a reading at `step`."""
        counters = self._counters.value
        rows = counters[self._rows_at]
        row = ops.mod(rows, self.capacity)
        total = ops.cast(self.tracker.total.value, "float32")
        count = ops.cast(self.tracker.count.value, "float32")
        rate = optimizer.learning_rate  # a schedule's value at `step`
        rate = ops.cast(getattr(rate, "value", rate), "float32")
        counters = ops.slice_update(counters, (row,), ops.reshape(step, (1,)))
        return (
            ops.slice_update(
                self._sums.value, (row, 0),
                ops.reshape(ops.stack([total, count]), (1, 2)),
            ),
            ops.slice_update(self._rates.value, (row,), ops.reshape(rate, (1,))),
            ops.slice_update(  # m = t, r += 1
                counters, (self._mark_at,), ops.stack([step, rows + 1])),
        )

    def _record(self):
        """Writes a reading if one is due (a traced step)."""
        optimizer = optimizers.unwrap(self.model.optimizer)
        step = ops.cast(optimizers.updates_in_step(optimizer), "int32")
        mark = self._counters.value[self._mark_at]
        due = ops.greater_equal(step - mark, self.every)
        variables = self.variables
        if backend.step_kind() == backend.FUNCTIONAL:
            # JAX, a tf.distribute replica: no assignment in a branch, and
            # no branch: a select of a few dozen numbers costs less than
            # XLA's conditional.
            values = self._with_reading(optimizer, step)
            for variable, value in zip(variables, values, strict=True):
                variable.assign(ops.where(due, value, variable.value))
            return

        def write():
            for variable, value in zip(
                variables, self._with_reading(optimizer, step), strict=True
            ):
                variable.assign(value)
            return ops.convert_to_tensor(True)

        ops.cond(due, write, lambda: ops.convert_to_tensor(False))

    # PyTorch runs the step op by op, one `apply` per applied update: the
    # host counts the updates and decides when a reading is due, and the
    # reading is copied into the buffer in place (`torch_ops.write_row`),
    # without a read of the device. Through Keras' ops a reading was a
    # device read and about thirty kernels, 4% of a 4 ms step at
    # `every=10` (`benchmarks/overhead.py --model mlp128`).

    def _count_update(self):
        if self._host is not None:
            self._host[0] += 1

    def _record_from_host(self):
        if self._host is None:  # the first step of an epoch, or a restore
            applies, counters = training.read_live(
                self.model, [optimizers.apply_counter(self.model.optimizer),
                             self._counters])
            self._host = [int(applies), int(counters[self._mark_at]),
                          int(counters[self._rows_at])]
        applies, mark, rows = self._host
        # the updates applied: fewer than the `apply` calls under gradient
        # accumulation
        applied = applies // self._accumulation
        if applied - mark < self.every:
            return
        optimizer = optimizers.unwrap(self.model.optimizer)
        rate = optimizer.learning_rate  # a schedule's value at `applied`
        row = rows % self.capacity
        self._torch.write_row(
            [self._sums.value, self._rates.value], row,
            [[self.tracker.total.value, self.tracker.count.value],
             getattr(rate, "value", rate)],
        )
        self._host[1:] = [applied, rows + 1]
        self._torch.write_items(
            self._counters.value, [row, self._mark_at, self._rows_at],
            [applied, applied, rows + 1])

    # -- between steps -------------------------------------------------------

    def install(self, fit=None):
        """Records from the next step on; returns the step count now.

        Args:
            fit: the `params` of the `fit` it records (see
                `apply_hooks.HookOwner.install_hook`).
        """
        self.remove_hook()  # left over by a `fit` that raised
        self._eager = backend.runs_step_eagerly(self.model)
        self._torch = backend.torch_ops() if self._eager else None
        self._accumulation = optimizers.accumulation_steps(self.model.optimizer)
        step = optimizers.get_iterations(self.model.optimizer)
        self.restart(step)
        self.install_scratch_hook(
            self._eager_hook if self._eager else self._hook, fit=fit)
        return step

    @property
    def scratch_variables(self):
        """The buffer (attached to the optimizer's state on JAX)."""
        return self.variables

    def restart(self, step):
        """Empties the buffer; the next reading ends `every` updates after
        `step` (between steps, with the state synced)."""
        self._sums.assign(np.zeros(self._sums.shape, "float32"))
        self._rates.assign(np.zeros(self._rates.shape, "float32"))
        counters = np.zeros(self._counters.shape, "int32")
        counters[self._mark_at] = step
        self._counters.assign(counters)
        self._delivered = step
        self._behind = None
        self.epoch_begins()

    def mark(self, step):
        """The host took a reading at `step` (an epoch's last span): the next
        one in the step ends `every` updates later. Between epochs."""
        training.sync_state(self.model)
        counters = np.array(self._counters.numpy(), "int32")
        counters[self._mark_at] = step
        self._counters.assign(counters)
        self._host = None
        self._delivered = max(self._delivered, step)

    def epoch_begins(self):
        """Before an epoch's first step (a restore may follow)."""
        self._host = None
        self._read_steps = 0
        self._read_time = time.monotonic()

    def read_due(self, steps_run):
        """Whether to `read` now, with `steps_run` steps run in the epoch.

        Due after `READ_SPAN` steps once `MIN_READ_SECONDS` have passed too,
        after `MAX_READ_SPAN` steps, or after `READ_SECONDS` on slow steps.
        """
        ran = steps_run - self._read_steps
        if ran >= MAX_READ_SPAN:
            return True
        if ran <= 0:
            return False
        elapsed = time.monotonic() - self._read_time
        return elapsed >= READ_SECONDS or (
            ran >= READ_SPAN and elapsed >= MIN_READ_SECONDS)

    def read(self, steps_run=None):
        """`[(step, total, count, rate), ...]` recorded since the last read.

        Args:
            steps_run: the steps run in the epoch now, in the middle of one
                (paces `read_due`); `None` at its end: then everything
                recorded is read.
        """
        if steps_run is not None:
            self._read_steps = steps_run
        self._read_time = time.monotonic()
        variables = [self._counters, self._sums, self._rates]
        behind, self._behind = self._behind, None
        found = [] if behind is None else [[np.asarray(v) for v in behind]]
        if self._jax and steps_run is not None:
            self._behind = self._copy_live(variables)
        if self._behind is None:
            found.append(training.read_live(self.model, variables))
        readings = []
        for counters, sums, rates in found:
            steps = counters[:self.capacity]
            new = [i for i in np.argsort(steps, kind="stable")
                   if steps[i] > self._delivered]
            if new:
                self._delivered = int(steps[new[-1]])
            readings += [
                (int(steps[i]), float(sums[i, 0]), float(sums[i, 1]),
                 optimizers.as_learning_rate(rates[i]))
                for i in new
            ]
        return readings

    def _copy_live(self, variables):
        """On JAX: copies of the live values, to read at the next read.

        A read of JAX's live state waits for the steps dispatched ahead (it
        drains the asynchronous queue). A copy is dispatched like a step
        (one jitted call, `jax_ops.copies`; the state itself is donated to
        the next step, so it cannot be kept); by the next read it has long
        been computed. On an accelerator it waits for nothing; JAX's CPU
        backend runs so small a program inline, after the step in flight.
        `None` when the state is synced (then the variables are read as
        they are).
        """
        live = dict(
            (id(ref), value)
            for ref, value in training.live_values(self.model, variables)
        )
        if len(live) < len(variables):
            return None
        return backend.jax_ops().copies(live[id(v)] for v in variables)

    def get_state(self):
        """The buffer and the newest step read (a mid-epoch backup).

        `"variables"` holds the rows of `(total, count)`, of `t` and of the
        rate, then `m` and `r`.
        """
        sums, rates, counters = training.read_live(self.model, self.variables)
        values = [sums, counters[:self.capacity], rates,
                  counters[self._mark_at], counters[self._rows_at]]
        return {
            "variables": [value.tolist() for value in values],
            "delivered": self._delivered,
            "read_steps": self._read_steps,
        }

    def set_state(self, state):
        """Puts back what `get_state` returned (between steps, synced)."""
        sums, steps, rates, mark, rows = state["variables"]
        self._sums.assign(np.asarray(sums, "float32"))
        self._rates.assign(np.asarray(rates, "float32"))
        self._counters.assign(np.asarray([*steps, mark, rows], "int32"))
        self._delivered = int(state["delivered"])
        self._behind = None
        self._host = None
        self._read_steps = int(state["read_steps"])
        self._read_time = time.monotonic()
