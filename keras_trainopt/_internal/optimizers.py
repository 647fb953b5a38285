"""Reading and setting an optimizer's learning rate, in one place.

Callbacks never poke at optimizer internals themselves: wrappers such as
`keras.optimizers.LossScaleOptimizer` are unwrapped here, and the question
"can this optimizer's learning rate be set?" is answered here, with an error
that tells the user how to fix it.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import backend
from keras_trainopt._internal import distribute

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def unwrap(optimizer):
    """Returns the optimizer that owns the learning rate (unwraps loss scaling)."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def has_settable_learning_rate(optimizer):
    """True when `optimizer` holds its learning rate in a variable."""
    return optimizer is not None and learning_rate_variable(optimizer) is not None


def check_settable_learning_rate(optimizer, caller):
    """Raises a `TypeError` that says how to fix it unless the rate can be set.

    Args:
        optimizer: the model's optimizer (`model.optimizer`).
        caller: the name of the callback that wants to set the rate, used in
            the message.
    """
    if has_settable_learning_rate(optimizer):
        return
    if optimizer is None:
        raise TypeError(
            f"{caller} sets the optimizer's learning rate, but the model has "
            "no optimizer. Call `model.compile(optimizer=...)` before `fit`."
        )
    inner = unwrap(optimizer)
    rate = getattr(inner, "_learning_rate", None)
    if isinstance(rate, _Schedule) or callable(rate):
        raise TypeError(
            f"{caller} sets the optimizer's learning rate, but this "
            f"{type(inner).__name__} was created with the schedule "
            f"{type(rate).__name__} as its `learning_rate`, so its rate cannot "
            "be set. Either compile with a float rate (e.g. "
            f"`keras.optimizers.{type(inner).__name__}(learning_rate=0.01)`) "
            f"and keep {caller}, or {_schedule_way_out(caller, inner)}."
        )
    raise TypeError(
        f"{caller} sets the optimizer's learning rate, but "
        f"{type(optimizer).__name__} has no `learning_rate` variable. Use a "
        "`keras.optimizers.Optimizer` created with a float learning rate."
    )


def _schedule_way_out(caller, inner):
    """How to keep a schedule in the optimizer instead of `caller` setting it.

    Only names what exists: `to_schedule` where the caller has it (the decay
    callbacks), otherwise the caller's own alternative.
    """
    import keras_trainopt  # late: keras_trainopt imports this module

    public = getattr(keras_trainopt, caller, None)
    if callable(getattr(public, "to_schedule", None)):
        return (
            f"drop {caller} from the callbacks and put the decay inside the "
            f"optimizer with `{caller}(...).to_schedule(steps_per_epoch=...)`"
        )
    if caller == "StochasticWeightAveraging":
        return (
            "keep the optimizer's schedule and create "
            "`StochasticWeightAveraging(swa_learning_rate=None)`, which then "
            "averages the weights without setting the rate"
        )
    if caller == "SnapshotEnsemble":
        return (
            "keep the optimizer's schedule (for cycles, "
            "`keras.optimizers.schedules.CosineDecayRestarts` or "
            "`keras_trainopt.CyclicCosineSchedule`) and collect the snapshots "
            "with `CheckpointEnsemble(...).ensemble()`, which does not set "
            "the rate"
        )
    return f"compile the model with a float rate only for {caller}"


def other_optimizers(model):
    """Names of the model's attributes that hold another optimizer.

    A model with two optimizers (a GAN whose `compile` keeps `d_optimizer`
    and `g_optimizer`, and whose `train_step` applies them) leaves
    `model.optimizer` (Keras' default, or one passed to `super().compile()`)
    unused, and a callback that acts on it then acts on nothing.
    """
    main = getattr(model, "optimizer", None)
    main = None if main is None else unwrap(main)
    return sorted(
        name
        for name, value in vars(model).items()
        if isinstance(value, keras.optimizers.Optimizer)
        and unwrap(value) is not main
    )


def warn_other_optimizers(model, caller, way_out):
    """Warns at train begin that `caller` acts on `model.optimizer` only."""
    names = other_optimizers(model)
    if not names:
        return
    warnings.warn(
        f"{caller} acts on `model.optimizer` "
        f"({type(unwrap(model.optimizer)).__name__}) only, but the model "
        f"also holds the optimizers {', '.join(names)}. If its `train_step` "
        f"applies those, `model.optimizer` makes no update and {caller} "
        f"does nothing. {way_out}",
        UserWarning,
        stacklevel=3,
    )


def warn_if_no_update(model, caller, applies_before):
    """Warns when `model.optimizer` never ran since `applies_before`
    (`get_applies`)."""
    if get_applies(model.optimizer) != applies_before:
        return False
    warnings.warn(
        f"{caller}: `model.optimizer` made no update in the first epoch, so "
        f"{caller} acted on an optimizer the model does not use (a custom "
        "`train_step` with optimizers of its own, as in a GAN). Put the "
        "rate schedule inside the optimizers that `train_step` applies.",
        UserWarning,
        stacklevel=3,
    )
    return True


def get_learning_rate(optimizer):
    """The optimizer's current learning rate as a Python float.

    The shortest decimal that round-trips the variable's dtype is returned, so
    a float32 rate compiled as 0.2 reads back as 0.2, not 0.20000000298.
    """
    return as_learning_rate(ops.convert_to_numpy(unwrap(optimizer).learning_rate))


def as_learning_rate(value):
    """A rate read from the device as the shortest round-tripping float."""
    return float(str(np.asarray(value)[()]))


def learning_rate_variable(optimizer):
    """The variable that holds the learning rate, or `None` for a schedule."""
    rate = getattr(unwrap(optimizer), "_learning_rate", None)
    return rate if isinstance(rate, keras.Variable) else None


def set_learning_rate(optimizer, value):
    """Assigns the Python float `value` to the optimizer's learning rate."""
    unwrap(optimizer).learning_rate = value


def assign_learning_rate_in_step(optimizer, value):
    """Assigns a tensor to the learning-rate variable inside a train step."""
    variable = unwrap(optimizer)._learning_rate
    variable.assign(ops.cast(value, variable.dtype))


class StepRate:
    """Sets the learning rate from a schedule of the step count, per update.

    After every applied update, inside the step, it writes the rate of the
    next update: between steps the variable holds it, and each update runs
    with its exact rate, evaluated once. `start` sets the first one from
    the host, between steps. An update that `LossScaleOptimizer` skips runs
    no hook (the hook sits on the inner optimizer), so it does not advance
    the rate.

    Where the step runs eagerly (PyTorch without `jit_compile`,
    `backend.runs_step_eagerly`) the rate is computed on the host from a
    count of the updates, in float64 with NumPy, a quarter of the time of
    the same formula in eager Keras ops; the count is read from
    `iterations` at `start` and advanced per applied update. Traced steps
    compute it from `iterations` in the step, since a host count would be
    baked into the trace.

    Args:
        model: the compiled model.
        schedule: `schedule(step)` in Keras ops (in the step), and
            `schedule.value(t)`, the same in float64.
    """

    def __init__(self, model, schedule):
        self._model = model
        self._schedule = schedule
        self._host_applies = None  # `apply` calls, counted when eager
        self._accumulation = 1  # batches per update

    def start(self):
        """Between steps (each epoch begin): the rate of the next update."""
        self._accumulation = accumulation_steps(self._model.optimizer)
        if backend.runs_step_eagerly(self._model):
            self._host_applies = get_applies(self._model.optimizer)
            self._assign_on_host()
        else:
            self._host_applies = None
            self._assign_from_iterations()

    def after_update(self):
        """Inside the step, after `apply`: the next update's rate (the same
        until an update is applied, under gradient accumulation)."""
        if self._host_applies is None:
            self._assign_from_iterations()
        else:
            self._host_applies += 1
            if self._host_applies % self._accumulation == 0:
                self._assign_on_host()

    def _assign_from_iterations(self):
        optimizer = self._model.optimizer
        assign_learning_rate_in_step(
            optimizer, self._schedule(updates_in_step(optimizer))
        )

    def _assign_on_host(self):
        step = self._host_applies // self._accumulation
        set_learning_rate(self._model.optimizer, self._schedule.value(step))


def step_variables(optimizer):
    """The variables that `get_iterations` and `get_learning_rate` read.

    The count of `apply` calls (`apply_counter`), and the learning-rate
    variable unless the rate is a schedule (a schedule is computed from that
    count).
    """
    rate = learning_rate_variable(optimizer)
    return [apply_counter(optimizer)] + ([rate] if rate is not None else [])


def get_iterations(optimizer):
    """Updates applied so far, as a Python int (Keras' `iterations`).

    Read from the optimizer that owns the learning rate, so loss-scaled steps
    skipped for non-finite gradients are not counted; under gradient
    accumulation, the updates, not the batches (`accumulation_steps`).
    """
    return updates_from_applies(optimizer, get_applies(optimizer))


def get_applies(optimizer):
    """The optimizer's `apply` calls so far, as a Python int (`apply_counter`)."""
    return int(np.asarray(ops.convert_to_numpy(apply_counter(optimizer).value)))


# -- gradient accumulation ----------------------------------------------------
#
# With `gradient_accumulation_steps=k` (Keras 3) the optimizer's `apply` runs
# at every batch but changes the weights at every k-th one only, with the
# mean of the k batches' gradients. Keras' `iterations` then counts those
# updates (`_iterations // k`, a tensor, no longer a variable), and the
# variable `_iterations` the `apply` calls. Every count of "updates" in this
# package is Keras' `iterations`; what runs after `apply` in the step acts
# only where it changed the weights (`applied_in_step`), and what counts on
# the host counts the `apply` calls and divides.


def accumulation_steps(optimizer):
    """Batches per update: the optimizer's `gradient_accumulation_steps`, or 1."""
    return int(getattr(unwrap(optimizer), "gradient_accumulation_steps", None)
               or 1)


def apply_counter(optimizer):
    """The variable that counts the optimizer's `apply` calls.

    The updates, or under gradient accumulation the batches (Keras'
    `_iterations`, which its learning-rate schedules read too).
    """
    inner = unwrap(optimizer)
    counter = getattr(inner, "_iterations", None)
    return counter if isinstance(counter, keras.Variable) else inner.iterations


def updates_from_applies(optimizer, applies):
    """The updates applied after `applies` calls of `apply` (Python ints)."""
    return applies // accumulation_steps(optimizer)


def updates_in_step(optimizer):
    """Inside the step: the updates applied so far (`iterations`), a tensor."""
    iterations = unwrap(optimizer).iterations
    return getattr(iterations, "value", iterations)


def applied_in_step(optimizer):
    """Inside the step, after `apply`: whether it changed the weights.

    A boolean tensor under gradient accumulation (true at every k-th
    batch); `None` otherwise, where every `apply` updates.
    """
    steps = accumulation_steps(optimizer)
    if steps == 1:
        return None
    return ops.equal(ops.mod(apply_counter(optimizer).value, steps), 0)


def applies_in_step(optimizer):
    """Inside the step, before `apply`: whether it will change the weights
    (as `applied_in_step`)."""
    steps = accumulation_steps(optimizer)
    if steps == 1:
        return None
    return ops.equal(ops.mod(apply_counter(optimizer).value + 1, steps), 0)


def both(first, second):
    """`first and second` of two boolean tensors, either `None` for true."""
    if first is None:
        return second
    if second is None:
        return first
    return ops.logical_and(first, second)


def loss_scale(optimizer):
    """The dynamic loss scale of a `LossScaleOptimizer`, as a Python float.

    `None` for an optimizer without loss scaling, or one not built yet. Keras
    halves the scale exactly when it skips an update for non-finite
    gradients (and leaves `iterations` of the inner optimizer unchanged;
    the wrapper's own `iterations` property reads the inner one), and
    doubles it after `dynamic_growth_steps` applied updates in a row.
    """
    scale = getattr(optimizer, "dynamic_scale", None)
    if scale is None:
        return None
    return float(np.asarray(ops.convert_to_numpy(scale.value)))


# -- state kept in the optimizer ---------------------------------------------
#
# A callback whose state changes *inside* the train step (a running average of
# the weights) keeps that state in variables of the optimizer: under JAX the
# step is a pure function of the model's and the optimizer's variables, so
# nothing else can be written there, and everything the optimizer holds is
# saved by `model.save_weights`, hence by `keras.callbacks.BackupAndRestore`
# and restored with it. The callback attaches its variables when a `fit`
# starts and detaches them when it ends, so a model saved after training has
# exactly the optimizer variables its own optimizer would create.


def build_optimizer(model):
    """Creates the optimizer's own variables now if it has none yet.

    Keras builds the optimizer lazily, at the first step; state variables
    must come after the optimizer's own, in a fixed order, so that a
    checkpoint taken in one process loads in another (this is what
    `BackupAndRestore` does before it loads).
    """
    optimizer = model.optimizer
    if not optimizer.built:
        with distribute.variable_scope(model):
            optimizer.build(model.trainable_variables)


def add_state_variable(
    model, reference=None, *, shape=(), dtype="int", name, backed_up=True,
    per_replica_sum=False,
):
    """A new variable for state kept in `model.optimizer` (see above).

    Shaped like `reference` when it is given. The default dtype is Keras'
    "int", as the optimizer's own step count: int64, or int32 on JAX
    (without `jax_enable_x64`), where an int64 variable is truncated to
    int32 with a `UserWarning` at every creation. The variable is created under
    the model's distribution strategy and aggregated "only first replica":
    every replica computes the same value, so the first replica's is kept.
    With `per_replica_sum` it is instead kept per replica and read as the
    sum over them (and the workers), as a metric's running total
    ("on read", "sum"). It is not attached to the optimizer yet
    (`attach_state_variables`).

    `backed_up=False` marks scratch state that a restart does not need (a
    measurement the step hands to a callback): `BackupAndRestore` leaves it
    out (`backed_up_variables`), so a callback may attach it at `fit` start,
    after a backup has been loaded.
    """
    if reference is not None:
        shape, dtype = reference.shape, reference.dtype
    with distribute.variable_scope(model):
        variable = keras.Variable(
            initializer=np.zeros(shape, dtype=dtype),
            dtype=dtype,
            trainable=False,
            aggregation="sum" if per_replica_sum else "only_first_replica",
            synchronization="on_read" if per_replica_sum else "auto",
            name=name,
        )
    variable._keras_trainopt_backed_up = backed_up
    return variable


def backed_up_variables(optimizer):
    """The optimizer's variables less the scratch state (`backed_up=False`)."""
    return [
        v
        for v in optimizer.variables
        if getattr(v, "_keras_trainopt_backed_up", True)
    ]


def attach_state_variables(optimizer, variables):
    """Makes `variables` part of the optimizer's state, after its own ones."""
    inner = unwrap(optimizer)
    tracked = {id(v) for v in inner.variables}
    locked = inner._tracker.locked
    inner._tracker.unlock()
    try:
        for variable in variables:
            if id(variable) not in tracked:
                inner._track_variable(variable)
    finally:
        if locked:
            inner._tracker.lock()


def detach_state_variables(optimizer, variables):
    """Takes `variables` out of the optimizer's state again."""
    inner = unwrap(optimizer)
    tracked = {id(v) for v in inner.variables}
    for variable in variables:
        if id(variable) in tracked:
            inner._untrack_variable(variable)
