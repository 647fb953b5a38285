"""Reading what a training step did: the batch loss, the weights."""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import optimizers


def loss_tracker(model):
    """The model's loss tracker: the metric `loss` with `total` and `count`.

    Raises:
        ValueError: the model has none (see `BatchLossReader`).
    """
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(
            metric, "count"
        ):
            return metric
    names = [metric.name for metric in getattr(model, "metrics", [])]
    raise ValueError(
        "The model has no loss tracker, so its batch loss cannot be "
        "read: expected a metric named `loss` with a running `total` "
        "and `count` in `model.metrics` (Keras adds one when "
        "compiled with a `loss`; a custom `train_step` can update a "
        '`keras.metrics.Mean(name="loss")` listed in its `metrics` '
        f"property). Received: model.metrics names={names}"
    )


class BatchLossReader:
    """The mean loss of the updates since the previous read.

    Keras logs the *running mean* of the loss over the epoch, not the loss of
    the last batch. This reader recovers the latter exactly from the loss
    tracker's running total and count: `(total_k - total_{k-1}) /
    (count_k - count_{k-1})`. With `steps_per_execution = s` a read covers the
    `s` updates of one execution. It reads the tracker between steps, never
    the batch logs, so a callback that uses it needs no `on_train_batch_end`
    hook (see `LossMonitor`).

    Raises:
        ValueError: the model has no loss tracker: no metric named `loss`
            with a running `total` and `count`, as Keras' own and a
            `keras.metrics.Mean(name="loss")` have.
    """

    def __init__(self, model):
        self._model = model
        self._tracker = loss_tracker(model)
        self.reset()

    @property
    def variables(self):
        """The variables that `read` reads."""
        return [self._tracker.total, self._tracker.count]

    def reset(self):
        """Call at epoch begin: Keras resets the tracker then."""
        self._total = 0.0
        self._count = 0.0

    @property
    def position(self):
        """`[total, count]` at the previous read (to resume mid-epoch)."""
        return [self._total, self._count]

    @position.setter
    def position(self, value):
        self._total, self._count = (float(v) for v in value)

    def read(self):
        """The mean loss since the previous read (`None` if no new update)."""
        # `read_live` reads the tracker's sync-on-read variables of a
        # tf.distribute strategy by conversion: their sum over the replicas,
        # and over the workers of a multi-worker run.
        total, count = map(float, read_live(self._model, self.variables))
        return self.advance(total, count)

    def advance(self, total, count):
        """The mean loss from the previous read to the tracker's `total` and
        `count` (read elsewhere, e.g. recorded in the step); `None` if no
        new update."""
        if count <= self._count:  # nothing new since the previous read
            return None
        loss = (total - self._total) / (count - self._count)
        self._total, self._count = total, count
        return float(loss)


def sync_state(model):
    """Makes the model's variables current in the middle of an epoch.

    Keras' JAX trainer keeps the live training state outside the variables
    during an epoch (their values are purged); `model.jax_state_sync()` is
    its way for a callback to write that state back before reading
    variables. On the other backends the variables are always current.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def unsynced_model(callback):
    """`callback.model`, without the state sync Keras does on JAX.

    On JAX, Keras' `Callback.model` property writes the whole live training
    state back to the variables at every access (`jax_state_sync`), and the
    next step then gathers and purges them all again. A hook that only reads
    a few values between steps takes the model from here and reads them
    with `read_live`; anything that reads or writes weights syncs first.
    """
    model = getattr(callback, "_model", None)
    return model if model is not None else callback.model


def live_values(model, variables):
    """`(variable, value)` for those of `variables` whose value JAX holds.

    In the middle of an epoch Keras' JAX trainer holds the live training
    state outside the variables (`model._jax_state`, the state its last
    step returned; the variables themselves are purged). Reading a few
    values from it costs far less than `sync_state`, which writes every
    variable back and makes the next step gather and purge them all again.
    Empty on the other backends and whenever the state is synced.
    """
    state = getattr(model, "_jax_state", None)
    if not state or getattr(model, "_jax_state_synced", True):
        return []
    wanted = {id(variable) for variable in variables}
    pairs = []
    for key, group in (
        ("optimizer_variables", lambda: model.optimizer.variables),
        ("metrics_variables", lambda: model.metrics_variables),
        ("non_trainable_variables", lambda: model.non_trainable_variables),
        ("trainable_variables", lambda: model.trainable_variables),
    ):
        if len(pairs) == len(wanted):
            break
        values = state.get(key)
        if values:
            pairs.extend(
                (ref, value)
                for ref, value in zip(group(), values, strict=True)
                if id(ref) in wanted
            )
    return pairs


@contextlib.contextmanager
def live_state(model, variables):
    """Reads of `variables` inside see their live values, on every backend.

    A cheap alternative to `sync_state` for a callback that reads a few
    variables (a step count, a metric's total) between steps: on JAX they
    are mapped to the live state with a `keras.StatelessScope`; elsewhere
    the variables are current and nothing changes. Only `variables` may be
    read inside: on JAX the others are purged.
    """
    pairs = live_values(model, variables)
    if not pairs:
        sync_state(model)  # a no-op unless a later Keras hides its live state
        yield
        return
    with keras.StatelessScope(state_mapping=pairs):
        yield


def read_live(model, variables):
    """The values of `variables` now, as NumPy arrays, on every backend.

    From JAX's live state in the middle of an epoch (`live_values`), else
    from the variables themselves. A variable is read by converting it, so
    under a `tf.distribute` strategy a sync-on-read variable gives its
    aggregate (the sum over the replicas, and the workers). Each read waits
    for the step in flight.
    """
    live = {id(ref): value for ref, value in live_values(model, variables)}
    if not live:
        sync_state(model)  # a no-op unless a later Keras hides its live state
    return [
        np.asarray(ops.convert_to_numpy(live.get(id(variable), variable)))
        for variable in variables
    ]


def learning_rate(model):
    """The optimizer's current learning rate, read like `applied_updates`."""
    optimizer = model.optimizer
    variable = optimizers.learning_rate_variable(optimizer)
    if variable is not None:
        return optimizers.as_learning_rate(read_live(model, [variable])[0])
    with live_state(model, optimizers.step_variables(optimizer)):
        return optimizers.get_learning_rate(optimizer)  # a schedule's value


def applied_updates(model):
    """The number of optimizer updates applied so far, read between steps.

    Step-based callbacks count updates with this, never with batch-hook
    calls: with `steps_per_execution = s` the hooks fire once per `s`
    updates, and under mixed precision a step whose update
    `LossScaleOptimizer` skips (non-finite gradients) still calls them. The
    count comes from the optimizer that owns the learning rate, read from
    the live state (`read_live`), so it is exact in the middle of an epoch
    on every backend. It costs a device read, which waits for the step in
    flight: callers read it only when the batch count says an update of
    interest may have happened (the updates applied never exceed the steps
    run).
    """
    return optimizers.updates_from_applies(model.optimizer,
                                           applied_calls(model))


def applied_calls(model):
    """The optimizer's `apply` calls so far, read like `applied_updates`: the
    updates, or under gradient accumulation the batches
    (`optimizers.apply_counter`)."""
    counter = optimizers.apply_counter(model.optimizer)
    return int(read_live(model, [counter])[0])


def copy_weights(model):
    """The model's weights as host NumPy arrays (a snapshot)."""
    return [np.array(ops.convert_to_numpy(v.value)) for v in model.weights]
