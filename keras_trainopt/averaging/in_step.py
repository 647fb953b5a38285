"""A running average of the weights, updated inside the compiled train step.

Both weight averages (EMA, SWA) keep one rule, `average += c * (weight -
average)` (`formulas.average_update`), and differ in the coefficient `c` and
in which updates are averaged. The update runs *inside the compiled train
step*, right after the optimizer's update (`_internal.apply_hooks`), so it
costs a few array operations per step instead of a host round trip, is exact
with `steps_per_execution > 1`, and works under JAX, where the step is a pure
function.

The average, the number of averaged updates and the number of skipped ones
live in variables attached to the optimizer during `fit`
(`_internal.optimizers`): `keras.callbacks.BackupAndRestore` saves and
restores them with the optimizer, so an interrupted run resumes to the same
average with no extra argument.

The update is written three ways (`_internal.backend.step_kind`), each the
cheapest kernel its backend allows:

    STATEFUL    (TensorFlow) `ops.cond` on finiteness, in the taken branch
                one fused in-place kernel per weight (plain SGD's).
    FUNCTIONAL  (JAX, tf.distribute replicas) one select per weight,
                `where(finite, a + c (w - a), a)`, fused by XLA into one pass.
    IN_PLACE    (PyTorch) one fused `_foreach_lerp_` over all weights.

PyTorch's step runs eagerly, op by op, so a value the host needs from the
device (whether this update is averaged, the coefficient) is a device read,
on a GPU a sync that empties the queue of kernels. There the host counts
instead (`counts_on_host`): one `apply` runs per applied update, so the
callback counts the updates (`count_update`) and decides on the host which
are averaged, and the counts of averaged and skipped updates are kept on the
host too, read from the variables once before each epoch's first update
(`recount`, after any restore). What remains is one read per averaged
update: whether the weights are finite.

An update whose weights are not all finite is left out and counted in
`num_skipped`, so a NaN never poisons the average; that check is one sum
over the weights per averaged update (one branch on TensorFlow, one device
read on PyTorch), and `check_finite=False` leaves it out, as Keras'
`use_ema` does.

Swapping the average into the model (for validation, `evaluate`, `predict`)
and back happens on the device: the raw weights are kept as device tensors
(JAX arrays are immutable, so there they are not even copied), and on
TensorFlow both directions run as one `tf.function` each. Only copies move,
so swapping in and back out is exact, bit for bit.
"""

import numpy as np
from keras import ops

from keras_trainopt._internal import backend
from keras_trainopt._internal import optimizers
from keras_trainopt.averaging import formulas


class InStepAverage:
    """One running average of a model's trainable weights.

    Its variables are made now, the average starting at the current weights;
    the caller attaches them to the optimizer (`variables`) for each `fit`.

    Args:
        model: a compiled model whose optimizer is built.
        name: the prefix of the variables' names in the optimizer.
        coefficient: called inside the step with the number of terms
            averaged so far (a tensor); returns `c` for the next term.
        check_finite: leave out (and count in `num_skipped`) an update whose
            weights are not all finite; `False` averages every due update.
    """

    def __init__(self, model, name, coefficient, check_finite=True):
        self.model = model
        self.check_finite = check_finite
        self.sources = list(model.trainable_variables)
        self.average = [
            optimizers.add_state_variable(
                model, v, name=f"{name}_{v.path.replace('/', '_')}"
            )
            for v in self.sources
        ]
        for average, source in zip(self.average, self.sources, strict=True):
            average.assign(ops.copy(source.value))  # JAX: a buffer of its own
        self.num_averaged = optimizers.add_state_variable(
            model, name=f"{name}_num_averaged"
        )
        self.num_skipped = optimizers.add_state_variable(
            model, name=f"{name}_num_skipped"
        )
        self.coefficient = coefficient
        self._saved = None  # the raw weights (device tensors) while swapped
        self._tf_swap = None  # TensorFlow: the two swap functions
        self._eager = False  # PyTorch's eager step: counts on the host
        self._host = None  # then [`apply` calls, num_averaged, num_skipped]
        self._accumulation = 1  # and the batches per update
        self._tensors = None  # and the variables' tensors, for the epoch

    @property
    def variables(self):
        """What the in-step update writes, in the optimizer's order."""
        return [*self.average, self.num_averaged, self.num_skipped]

    # -- inside the train step ------------------------------------------------

    def update(self, due=None):
        """Adds the weights to the average where `due` (`None`: always).

        Inside the step, or eagerly between steps (after `sync_state`).
        `due` is a boolean tensor, or a Python bool decided on the host.
        """
        if due is False:
            return
        _UPDATES[backend.step_kind()](self, None if due is True else due)

    # -- PyTorch's eager step: counts on the host ------------------------------

    @property
    def counts_on_host(self):
        """Whether the step counts on the host (`count_update`)."""
        return self._eager

    def recount(self):
        """Between steps, at train begin and before each epoch's first update
        (after any restore): the host reads the counts again at the next
        update."""
        self._eager = backend.runs_step_eagerly(self.model)
        self._host = None
        self._tensors = None

    def count_update(self):
        """In the hook after `apply`, when `counts_on_host`: the updates
        applied so far, this one included; `None` when this `apply` changed
        no weight (under gradient accumulation, all but every k-th)."""
        if self._host is None:  # once per epoch: a device read
            optimizer = self.model.optimizer
            self._accumulation = optimizers.accumulation_steps(optimizer)
            self._host = [optimizers.get_applies(optimizer), *self.counts()]
            # PyTorch's variables keep their tensor (`assign` copies into
            # it): taken once, not through `.value` at every update (about
            # 0.1 ms for a dozen variables)
            self._tensors = self._torch_tensors()
        else:
            self._host[0] += 1
        applies, steps = self._host[0], self._accumulation
        return None if applies % steps else applies // steps

    def _torch_tensors(self):
        """The weights', averages' and counts' tensors (PyTorch)."""
        return (
            [w.value for w in self.sources],
            [a.value for a in self.average],
            [self.num_averaged.value, self.num_skipped.value],
        )

    # -- between steps --------------------------------------------------------

    def check_same_weights(self, model, owner):
        """Raises `ValueError` if `model`'s trainable weights are not `sources`.

        Args:
            model: the model of a new `fit`.
            owner: the averaging callback's class name, for the message.
        """
        now = [id(v) for v in model.trainable_variables]
        if now != [id(v) for v in self.sources]:
            raise ValueError(
                f"The model's trainable weights changed since {owner} started "
                "averaging them (a layer was frozen or unfrozen, or layers "
                f"were added). Use a new {owner} for the new set of weights."
            )

    def counts(self):
        """`(num_averaged, num_skipped)` as Python ints."""
        return _to_int(self.num_averaged), _to_int(self.num_skipped)

    def average_arrays(self):
        """The average as NumPy arrays aligned with `sources`."""
        return [_to_numpy(a.value) for a in self.average]

    def load(self, average, num_averaged, num_skipped):
        """Sets the average and its counts from host values, checked."""
        if len(average) != len(self.average):
            raise ValueError(
                f"The state holds {len(average)} averaged arrays but "
                f"the model has {len(self.average)} trainable weights."
            )
        for variable, value in zip(self.average, average, strict=True):
            if tuple(np.shape(value)) != tuple(variable.shape):
                raise ValueError(
                    f"The averaged array for {variable.name} has shape "
                    f"{np.shape(value)}; the weight has shape {variable.shape}."
                )
            variable.assign(value)
        self.num_averaged.assign(int(num_averaged))
        self.num_skipped.assign(int(num_skipped))
        self._host = None

    def put_in(self):
        """Overwrites the model's trainable weights with the average."""
        for source, average in zip(self.sources, self.average, strict=True):
            source.assign(ops.copy(average.value))

    @property
    def swapped_in(self):
        """Whether the model holds the average in place of its raw weights."""
        return self._saved is not None

    def swap_in(self):
        """Puts the average in the model, keeping the raw weights on device."""
        if self._saved is not None:
            return
        if backend.is_tensorflow():
            self._saved = self._tf_functions()[0]()
        else:
            # JAX arrays are immutable: holding the value keeps it. PyTorch
            # assigns in place, so the raw weights need a copy, and the
            # average none.
            self._saved = [
                ops.copy(s.value) if backend.is_torch() else s.value
                for s in self.sources
            ]
            for source, average in zip(self.sources, self.average, strict=True):
                source.assign(
                    average.value if backend.is_torch()
                    else ops.copy(average.value)  # JAX: a buffer of its own
                )

    def swap_out(self):
        """Puts the raw weights back, bit for bit."""
        if self._saved is None:
            return
        if backend.is_tensorflow():
            self._tf_functions()[1](self._saved)
        else:
            for source, raw in zip(self.sources, self._saved, strict=True):
                source.assign(raw)
        self._saved = None

    def raw_arrays(self):
        """The raw weights as NumPy arrays aligned with `sources`."""
        if self._saved is not None:
            return [_to_numpy(raw) for raw in self._saved]
        return [_to_numpy(s.value) for s in self.sources]

    def _tf_functions(self):
        """TensorFlow: swap in and back out, each as one `tf.function`.

        One call per direction instead of an eager op per weight, as Keras'
        `SwapEMAWeights` does on TensorFlow.
        """
        if self._tf_swap is None:
            import tensorflow as tf

            sources, averages = self.sources, self.average

            @tf.function(autograph=False)
            def swap_in():
                raw = [tf.identity(s.value) for s in sources]
                with tf.control_dependencies(raw):
                    for source, average in zip(sources, averages, strict=True):
                        source.assign(average.value)
                return raw

            @tf.function(autograph=False)
            def swap_out(raw):
                for source, value in zip(sources, raw, strict=True):
                    source.assign(value)

            self._tf_swap = (swap_in, swap_out)
        return self._tf_swap


# -- the three update paths ----------------------------------------------------


def _update_stateful(state, due):
    """TensorFlow: assigns inside the taken branch only.

    A due update is two kernels per weight: the difference `a - w` (whose
    sum also tells whether the weights are finite: the averages always
    are), and plain SGD's fused in-place kernel `a -= c (a - w)`
    (`tf_ops.subtract_scaled_`), where `a + c (w - a)` written as ops would
    be four passes, each with a temporary.
    """
    tf_ops = backend.tf_ops()

    def update():
        deltas = [
            ops.subtract(a.value, w.value)
            for a, w in zip(state.average, state.sources, strict=True)
        ]

        def average():
            c = state.coefficient(state.num_averaged)
            tf_ops.subtract_scaled_(state.average, deltas, c)
            state.num_averaged.assign_add(1)
            return ops.convert_to_tensor(True)

        def skip():
            state.num_skipped.assign_add(1)
            return ops.convert_to_tensor(False)

        if not state.check_finite:
            return average()
        return ops.cond(formulas.all_finite(deltas, xp=ops), average, skip)

    if due is None:
        update()
    else:
        ops.cond(due, update, lambda: ops.convert_to_tensor(False))


def _update_in_place(state, due):
    """PyTorch: one fused in-place pass over the weights (`torch_ops`).

    Keras' eager PyTorch ops would launch four kernels per weight here, each
    with a temporary. `lerp_` is `formulas.average_update` as one kernel.
    In the eager step the coefficient comes from the host's count
    (`counts_on_host`); only the finiteness of the weights is read.
    """
    torch_ops = backend.torch_ops()
    if due is not None and not bool(ops.convert_to_numpy(due)):
        return  # a compiled step (`jit_compile=True`): read on the device
    host = state._host if state.counts_on_host else None
    if host is None:  # a compiled step, or between steps: read on the device
        weights, averages, counts = state._torch_tensors()

        def coefficient():
            return ops.convert_to_numpy(state.coefficient(state.num_averaged))
    else:
        weights, averages, counts = state._tensors

        def coefficient():
            return state.coefficient(np.float32(host[1]), xp=np)
    finite = torch_ops.all_finite(weights) if state.check_finite else True
    if finite:
        torch_ops.lerp_(averages, weights, coefficient())
    torch_ops.add_(counts[0 if finite else 1], 1)
    if host is not None:
        host[1 if finite else 2] += 1


def _update_functional(state, due):
    """JAX and tf.distribute replicas: new values, assigned after (under JAX,
    the assignment is recorded).

    A due update is one select per weight, `where(finite, a + c (w - a), a)`,
    not a branch on `finite`: XLA fuses it into one pass that reads the
    weights and averages and writes the averages, as Keras' own `use_ema`
    does, where a branch would first write the differences `w - a` out as
    its operands.
    """
    variables = state.variables

    def unchanged():
        return [v.value for v in variables]

    def update():
        weights = [w.value for w in state.sources]
        n, skipped = state.num_averaged.value, state.num_skipped.value
        c = state.coefficient(n)
        averages = [
            formulas.average_update(a.value, w, ops.cast(c, a.dtype))
            for a, w in zip(state.average, weights, strict=True)
        ]
        if not state.check_finite:
            return averages + [n + 1, skipped]
        finite = formulas.all_finite(weights, xp=ops)
        averages = [
            ops.where(finite, new, a.value)
            for a, new in zip(state.average, averages, strict=True)
        ]
        return averages + [
            n + ops.cast(finite, n.dtype),
            skipped + ops.cast(ops.logical_not(finite), skipped.dtype),
        ]

    values = update() if due is None else ops.cond(due, update, unchanged)
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


_UPDATES = {
    backend.STATEFUL: _update_stateful,
    backend.IN_PLACE: _update_in_place,
    backend.FUNCTIONAL: _update_functional,
}


def _to_numpy(tensor):
    return np.array(ops.convert_to_numpy(tensor))


def _to_int(variable):
    return int(ops.convert_to_numpy(variable.value))
