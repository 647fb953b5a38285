"""BatchNorm statistics that match a model's weights, recomputed from data.

Every `BatchNormalization` layer of the model is found wherever it sits (at
the top level, inside a nested functional or Sequential sub-model such as a
`keras.applications` backbone, or inside a subclassed model or layer), and
recomputed in the order the data reaches it. Its inputs are caught by
wrapping the layer's `call` for the duration of a forward pass in inference
mode, so no probe model is needed and any model that can be called on a batch
is supported.
"""

import warnings
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import arrays
from keras_trainopt._internal import batches as batch_data
from keras_trainopt._internal import validation


def recompute_batchnorm_statistics(
    model: keras.Model,
    data: Any,  # arrays, or an iterable of batches: see `data` below
    batch_size: int = 128,
    steps: int | None = None,
    *,
    skip_frozen: bool = False,
) -> None:
    """Sets every BatchNorm layer's moving mean and variance from `data`.

    BatchNorm layers normalize at inference with moving averages of the
    statistics seen during training, gathered for the weights of the moment.
    Averaged weights (SWA, EMA) were never trained on, so those statistics do
    not belong to them, and accuracy can suffer (Izmailov et al. 2018, who
    recompute them with one pass over the training data; PyTorch's
    `torch.optim.swa_utils.update_bn`). This function computes them exactly:
    for each BatchNorm layer, in the order the data reaches them, the mean
    and the (biased, as BatchNorm uses) variance of its inputs over all of
    `data`, with the model in inference mode and the layers before it already
    updated, i.e. the statistics the layer will see at inference.

    Every `BatchNormalization` in the model counts, nested ones included (a
    `keras.applications` backbone, a sub-model, a subclassed model). A layer
    that one forward pass calls more than once (shared between two branches)
    has no single input distribution and is refused. The batches of `data`
    are held on the host for the recomputation (one pass per BatchNorm layer,
    stopped at that layer): with a large or repeating pipeline, bound it with
    `steps`.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import recompute_batchnorm_statistics
        >>> model = keras.Sequential([keras.Input((3,)),
        ...                           keras.layers.BatchNormalization()])
        >>> x = np.arange(12.0).reshape(4, 3)
        >>> recompute_batchnorm_statistics(model, x)
        >>> bn = model.layers[0]
        >>> np.allclose(bn.moving_mean.numpy(), x.mean(axis=0))
        True
        >>> np.allclose(bn.moving_variance.numpy(), x.var(axis=0))
        True

    Args:
        model: a built Keras model (functional, Sequential or subclassed).
        data: the inputs: a NumPy array (or a list/dict of them for several
            inputs), or an iterable of input batches such as a
            `tf.data.Dataset`, a `keras.utils.PyDataset` or a generator;
            `(x, y)` and `(x, y, sample_weight)` batches are accepted and
            only `x` is used. An infinite `tf.data.Dataset` (`.repeat()`)
            needs `steps`. The length of a Python generator cannot be known:
            one that never ends needs `steps`, or this never returns.
        batch_size: batch size for arrays (int >= 1).
        steps: use at most this many batches of `data` (int >= 1), or
            `None` for all of it.
        skip_frozen: leave the statistics of BatchNorm layers with
            `trainable=False` alone (Keras freezes their statistics; a frozen
            pretrained backbone keeps its own).

    Reference: P. Izmailov et al., "Averaging Weights Leads to Wider Optima
    and Better Generalization", UAI 2018, section 3.2.
    """
    validation.check_int("batch_size", batch_size, low=1)
    steps = check_steps("steps", steps, data)
    validation.check_bool("skip_frozen", skip_frozen)
    layers = batchnorm_layers(model)
    _check_data(data, model)
    if not layers:
        return
    batches = _collect(data, batch_size, steps)
    if not batches:
        raise ValueError(
            "`data` yielded no batches, so BatchNorm statistics cannot be "
            f"recomputed. Received: data={type(data).__name__}"
        )
    order = reach_order(model, batches[0], layers)
    for layer in order:
        if skip_frozen and not layer.trainable:
            continue
        mean, variance = _input_statistics(model, batches, layer)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(
            variance.astype(layer.moving_variance.dtype)
        )


def batchnorm_layers(model):
    """Every BatchNormalization layer in `model`, nested ones included."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model. Received: "
            f"model={model!r} (of type {type(model).__name__})"
        )
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and (
            id(layer) not in seen
        ):
            seen.add(id(layer))
            found.append(layer)
    return found


def reach_order(model, batch, layers):
    """`layers` in the order one inference pass over `batch` calls them.

    Layers the pass never calls are left out. Raises ValueError for a layer
    called more than once.
    """
    if not model.built:
        # built first: building traces `call` symbolically, a pass of its own
        model(batch, training=False)
    calls = []
    with _Recording(layers, lambda layer, x: calls.append(layer)):
        model(batch, training=False)
    order, seen = [], set()
    for layer in calls:
        if id(layer) in seen:
            raise ValueError(
                "BatchNorm statistics cannot be recomputed for a "
                "BatchNormalization layer that one forward pass calls more "
                f"than once (shared between branches): {layer.name!r}. Give "
                "each branch its own BatchNormalization layer."
            )
        seen.add(id(layer))
        order.append(layer)
    return order


def check_steps(name, steps, data):
    """`steps` checked, and required for data that never ends."""
    validation.check_int(name, steps, low=1, allow_none=True)
    if steps is None and batch_data.is_endless(data):
        raise ValueError(
            "The BatchNorm data never ends (a tf.data.Dataset that repeats, "
            "or a PyDataset without a length), so recomputing BatchNorm "
            "statistics over all of it would never end. Pass "
            f"`{name}`, the number of its batches to use. Received: "
            f"{name}=None"
        )
    return steps


class _Stop(BaseException):
    """Ends a forward pass once the wanted layer's input is caught.

    A BaseException, so that no `except Exception` on the way (Keras'
    traceback helpers) wraps or swallows it.
    """


class _Recording:
    """Wraps the `call` of `layers` to hand their inputs to `record`."""

    def __init__(self, layers, record):
        self.layers, self.record = layers, record

    def __enter__(self):
        for layer in self.layers:
            original = layer.call

            def call(inputs, *args, _layer=layer, _original=original, **kw):
                self.record(_layer, inputs)
                return _original(inputs, *args, **kw)

            layer.call = call
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            if "call" in vars(layer):
                del layer.call


def _input_statistics(model, batches, layer):
    """Mean and biased variance of `layer`'s inputs over `batches` (float64)."""
    total = total_sq = None
    count = 0
    caught = []

    def record(_, inputs):
        caught.append(inputs)
        raise _Stop

    for batch in batches:
        caught.clear()
        with _Recording([layer], record):
            try:
                model(batch, training=False)
            except _Stop:
                pass
        values = np.asarray(ops.convert_to_numpy(caught[0]), "float64")
        axis = layer.axis % values.ndim
        axes = tuple(i for i in range(values.ndim) if i != axis)
        batch_sum = values.sum(axis=axes)
        batch_sq = np.square(values).sum(axis=axes)
        total = batch_sum if total is None else total + batch_sum
        total_sq = batch_sq if total_sq is None else total_sq + batch_sq
        count += values.size // values.shape[axis]
    mean = total / count
    return mean, np.maximum(total_sq / count - np.square(mean), 0.0)


def _check_data(data, model):
    if isinstance(data, (str, bytes)) or not (
        arrays.is_arrays(data)
        or hasattr(data, "__iter__")
        or isinstance(data, keras.utils.PyDataset)
    ):
        raise TypeError(
            "`data` must be an array (or a list or dict of arrays), or an "
            "iterable of input batches. Received: "
            f"data={data!r} (of type {type(data).__name__})"
        )
    inputs = _model_inputs(model)
    if isinstance(data, list) and inputs and len(inputs) != len(data):
        raise ValueError(
            f"`data` as a list holds one array per model input; the model "
            f"takes {len(inputs)} input(s), the list has {len(data)} arrays. "
            "Pass an iterable of batches as a tuple or a generator instead."
        )
    if arrays.is_arrays(data) and not isinstance(data, dict) and inputs:
        parts = data if isinstance(data, list) else [data]
        # one array for a model of several inputs: checked against the first
        for part, tensor in zip(parts, inputs, strict=False):
            shape, expected = tuple(np.shape(part)), tuple(tensor.shape)
            if len(shape) != len(expected) or any(
                e is not None and e != s for e, s in zip(expected[1:], shape[1:],
                                                         strict=True)
            ):
                raise ValueError(
                    "`data` must have the model's input shape "
                    f"{expected}, batch axis first. Received: data of shape "
                    f"{shape}"
                )


def _model_inputs(model):
    try:
        return list(model.inputs or [])
    except (AttributeError, ValueError):
        return []  # a subclassed model: no symbolic inputs


def _collect(data, batch_size, steps):
    """The input batches to use, held so that every pass sees the same ones."""
    batches = []
    for batch in _batches(data, batch_size):
        if steps is not None and len(batches) >= steps:
            break
        batches.append(batch)
    return batches


def _batches(data, batch_size):
    if arrays.is_arrays(data):
        n = arrays.num_samples(data, "data")
        for start in range(0, n, batch_size):
            yield arrays.take(data, slice(start, start + batch_size))
        return
    for batch in batch_data.iterate(data):
        if isinstance(batch, tuple):
            batch = batch[0]
        yield batch


# -- for the weight-average callbacks (`batchnorm_data`) -----------------------


def recompute_for_average(model, data, steps, owner):
    """Recomputes the statistics for an average just put in; never raises.

    At train end a failure must not lose the trained model and the `History`
    of the `fit`: it becomes a `UserWarning`, and the model keeps the
    statistics of training. Frozen (`trainable=False`) BatchNorm layers keep
    theirs (a pretrained backbone's).

    Args:
        model: the model holding the average.
        data, steps: the callback's `batchnorm_data` and `batchnorm_steps`.
        owner: the callback's class name, for the warning.

    Returns:
        Whether the statistics were recomputed.
    """
    try:
        recompute_batchnorm_statistics(model, data, steps=steps,
                                       skip_frozen=True)
    except Exception as error:  # noqa: BLE001 -- reported, never swallowed
        warnings.warn(
            f"{owner}: BatchNorm statistics could not be recomputed "
            f"({error}); the model holds the average with the statistics of "
            "training.",
            stacklevel=4,
        )
        return False
    return True


def check_callback_arguments(data, steps, apply_at_end):
    """Checks `batchnorm_data` and `batchnorm_steps` at construction."""
    if data is None:
        validation.check_int("batchnorm_steps", steps, low=1, allow_none=True)
        return
    if not apply_at_end:
        raise ValueError(
            "`batchnorm_data` recomputes BatchNorm statistics for the "
            "average at train end, so it needs apply_at_end=True. "
            "Received: apply_at_end=False"
        )
    if isinstance(data, (str, bytes)) or not (
        hasattr(data, "__array__")
        or hasattr(data, "__iter__")
        or isinstance(data, keras.utils.PyDataset)
    ):
        raise TypeError(
            "`batchnorm_data` must be an array or an iterable of input "
            f"batches. Received: batchnorm_data={data!r} (of "
            f"type {type(data).__name__})"
        )
    check_steps("batchnorm_steps", steps, data)


def check_before_fit(model, data, caller):
    """Refuses, at train begin, BatchNorm data that cannot work.

    Its type and shape; for data that can be read again (arrays, datasets),
    one inference pass over its first batch: the model runs on it and no
    BatchNorm layer is called twice. A generator cannot be peeked at.
    """
    _check_data(data, model)
    layers = batchnorm_layers(model)
    if not layers:
        warnings.warn(
            f"{caller}: `batchnorm_data` was given but the model has no "
            "BatchNormalization layer; it is not used.",
            stacklevel=4,
        )
        return
    if batch_data.is_reiterable(data):
        first = first_batch(data)
        if first is None:
            raise ValueError(
                "`batchnorm_data` yields no batches, so BatchNorm statistics "
                "cannot be recomputed at train end. Received: "
                f"batchnorm_data={type(data).__name__}"
            )
        reach_order(model, first, layers)


def first_batch(data):
    """The first input batch of re-iterable `data`, or `None` if empty."""
    for batch in _batches(data, 8):
        return batch
    return None
