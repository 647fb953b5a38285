"""Which process writes: only the chief of a multi-worker run does."""

import contextlib
import json
import os


def is_chief():
    """True in a single-process run and in the chief of a multi-worker run.

    The chief is the task of type "chief" in `TF_CONFIG`, or worker 0 when
    the cluster has no "chief" task (the convention of
    `tf.distribute.MultiWorkerMirroredStrategy`). On JAX, process 0 is the
    chief of a multi-process run.
    """
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            parsed = json.loads(config)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"TF_CONFIG is not valid JSON: {error}. Received: {config!r}"
            ) from None
        task = parsed.get("task") or {}
        task_type, index = task.get("type"), task.get("index", 0)
        if task_type is None or task_type == "chief":
            return True
        cluster = parsed.get("cluster") or {}
        return task_type == "worker" and index == 0 and "chief" not in cluster
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    return True


def variable_scope(model):
    """The scope to create variables in for `model`.

    Under a `tf.distribute` strategy, variables must be created in the
    strategy's scope to be mirrored on every replica; other backends (and
    TensorFlow without a strategy) need no scope.
    """
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def has_strategy(model):
    """Whether `model` was built in a `tf.distribute` strategy's scope."""
    return getattr(model, "_distribute_strategy", None) is not None


def in_replica_context():
    """True inside a `tf.distribute` replica function (`strategy.run`).

    There, a variable update inside a conditional branch is not allowed
    (mirrored variables synchronize through `merge_call`), so in-step updates
    compute their new values in the branches and assign after.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()


def is_distributed(model):
    """Whether `model` trains under a `tf.distribute` strategy or in JAX
    processes of their own.

    There, a decision that each worker takes from its own clock could differ
    between them, and a probe that one runs and another skips would wait
    forever on the collectives inside it: such decisions must not depend on
    time.
    """
    if has_strategy(model):
        return True
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count() > 1
    return False
