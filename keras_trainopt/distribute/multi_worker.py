"""`patch_keras_for_multi_worker`: lets Keras 3's `fit` run multi-worker."""

import warnings

import keras

# Set on the patched module function, so that patching twice wraps once.
_ORIGINAL = "_keras_trainopt_original"


def patch_keras_for_multi_worker(model):
    """Works around Keras 3's two failures under `MultiWorkerMirroredStrategy`.

    In Keras 3.15, `model.fit` under `tf.distribute.MultiWorkerMirroredStrategy`
    fails before the first step, with or without callbacks (an open question
    upstream, keras-team/keras#20585):

    1. To build the metrics, Keras takes the first distributed batch and
       calls `strategy.reduce("MEAN", batch)` on the whole `(x, y)`
       structure; this strategy's `reduce` takes one value: "Attempt to
       convert a value (PerReplica: ...) to a Tensor". Patched on `model`:
       the build uses the local replica's part of the batch (same dtypes; a
       symbolic build does not depend on the batch size).
    2. Each step's logs (the metrics' scalar results) are reduced with
       `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar:
       "Invalid reduction dimension 0 for input with 0 dimensions". Patched
       in Keras' TensorFlow trainer, for this strategy only: the mean over
       the replicas (`axis=None`), which is what `MirroredStrategy` gets.

    Neither changes what training computes: `tests/distribute/` trains
    two worker processes with the patch and matches one device within 1e-6.
    Call it after `compile`, in every worker. It does nothing, and returns
    the model unchanged, on the JAX and PyTorch backends and for a model not
    built under `MultiWorkerMirroredStrategy`, so scripts may call it
    unconditionally. If a future Keras no longer has the internals patched,
    it warns and does nothing.

    Examples:
        >>> import keras
        >>> from keras_trainopt.distribute import patch_keras_for_multi_worker
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> patch_keras_for_multi_worker(model) is model  # no strategy: no-op
        True

        Under `TF_CONFIG` with two workers:

            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            with strategy.scope():
                model = build_model()
                model.compile(...)
            patch_keras_for_multi_worker(model)
            model.fit(dataset, callbacks=[...])

    Args:
        model: a `keras.Model`, compiled under the strategy's scope.

    Returns:
        `model`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if keras.backend.backend() != "tensorflow":
        return model
    import tensorflow as tf

    model_strategy = getattr(model, "_distribute_strategy", None)
    if not isinstance(model_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not (
        hasattr(tf_trainer, "reduce_per_replica")
        and hasattr(model, "_maybe_symbolic_build")
        and hasattr(model, "_symbolic_build")
    ):
        warnings.warn(
            f"patch_keras_for_multi_worker: Keras {keras.__version__} has no "
            "`reduce_per_replica` or `_maybe_symbolic_build` in its "
            "TensorFlow trainer; nothing was patched.",
            stacklevel=2,
        )
        return model

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model_strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(local, next(batches))
                break
        with model_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build

    original = getattr(tf_trainer.reduce_per_replica, _ORIGINAL, None)
    original = original or tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction == "auto" and isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values
            )
        return original(values, strategy, reduction)

    setattr(reduce_per_replica, _ORIGINAL, original)
    tf_trainer.reduce_per_replica = reduce_per_replica
    return model
