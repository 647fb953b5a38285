"""Reading what a training step did: the batch loss, the weights."""

import numpy as np
from keras import ops

from keras_trainopt._internal import optimizers


def _loss_tracker(model):
    for metric in getattr(model, "metrics", []):
        if metric.name == "loss" and hasattr(metric, "total") and hasattr(
            metric, "count"
        ):
            return metric
    return None


class BatchLossReader:
    """The mean loss of the updates since the previous read.

    Keras logs the *running mean* of the loss over the epoch, not the loss of
    the last batch. This reader recovers the latter exactly from the loss
    tracker's running total and count: `(total_k - total_{k-1}) /
    (count_k - count_{k-1})`. With `steps_per_execution = s` a read covers the
    `s` updates of one execution. Models without Keras' loss tracker (a custom
    `train_step`) fall back to the `loss` entry of the batch logs.
    """

    def __init__(self, model):
        self._tracker = _loss_tracker(model)
        self.reset()

    def reset(self):
        """Call at epoch begin: Keras resets the tracker then."""
        self._total = 0.0
        self._count = 0.0

    def read(self, logs):
        """The mean loss since the previous read (`None` if no new update)."""
        if self._tracker is None:
            if not logs or "loss" not in logs:
                keys = sorted(logs or {})
                raise ValueError(
                    "The model reports no `loss` in its batch logs, so its "
                    f"loss cannot be monitored. Keys in the logs: {keys}"
                )
            return float(ops.convert_to_numpy(logs["loss"]))
        # Not float(variable): under a tf.distribute strategy the tracker's
        # variables are sync-on-read, and only a conversion reads them (the
        # sum over the replicas, and over the workers of a multi-worker run).
        total = float(ops.convert_to_numpy(self._tracker.total))
        count = float(ops.convert_to_numpy(self._tracker.count))
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


def applied_updates(model):
    """The number of optimizer updates applied so far, read between steps.

    Step-based callbacks count updates with this, never with batch-hook
    calls: with `steps_per_execution = s` the hooks fire once per `s`
    updates, and under mixed precision a step whose update
    `LossScaleOptimizer` skips (non-finite gradients) still calls them. The
    count comes from the optimizer that owns the learning rate
    (`optimizers.get_iterations`), after `sync_state`, so it is exact in the
    middle of an epoch on every backend. It costs a device read: callers
    read it only when the batch count says an update of interest may have
    happened (the updates applied never exceed the steps run).
    """
    sync_state(model)
    return optimizers.get_iterations(model.optimizer)


def steps_done(batch, params):
    """Train steps run in the epoch once the batch hook of `batch` fires.

    With `steps_per_execution = s` the hooks fire once per execution with
    the index of its last step, but Keras 3.15 numbers a last, shorter
    execution as if it were full (steps 6 and 7 of 8 with s = 3 end at
    "batch 8"), so the count is capped at the epoch's steps.
    """
    steps = (params or {}).get("steps")
    return batch + 1 if not steps else min(batch + 1, int(steps))


def is_last_batch(batch, params):
    """Whether the batch hook of `batch` ends the epoch (see `steps_done`)."""
    steps = (params or {}).get("steps")
    return bool(steps) and batch + 1 >= int(steps)


def copy_weights(model):
    """The model's weights as host NumPy arrays (a snapshot)."""
    return [np.array(ops.convert_to_numpy(v.value)) for v in model.weights]
