"""BatchNorm statistics that match a model's weights, recomputed from data."""

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import arrays
from keras_trainopt._internal import validation


def recompute_batchnorm_statistics(model, data, batch_size=128):
    """Sets every BatchNorm layer's moving mean and variance from `data`.

    BatchNorm layers normalize at inference with moving averages of the
    statistics seen during training, gathered for the weights of the moment.
    Averaged weights (SWA, EMA) were never trained on, so those statistics do
    not belong to them, and accuracy can suffer (Izmailov et al. 2018, who
    recompute them with one pass over the training data; PyTorch's
    `torch.optim.swa_utils.update_bn`). This function computes them exactly:
    for each BatchNorm layer, in the order of the graph, the mean and the
    (biased, as BatchNorm uses) variance of its inputs over all of `data`,
    with the model in inference mode and the layers before it already
    updated, i.e. the statistics the layer will see at inference.

    It costs one pass over `data` per BatchNorm layer (only up to that
    layer). Functional and Sequential models are supported, with their
    BatchNorm layers at the top level.

    Example:

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
        model: a built functional or Sequential Keras model.
        data: the inputs: a NumPy array (or a list/dict of them for several
            inputs), or an iterable of input batches such as a
            `tf.data.Dataset`; `(x, y)` and `(x, y, sample_weight)` batches
            are accepted and only `x` is used.
        batch_size: batch size for arrays (int >= 1).

    Reference: P. Izmailov et al., "Averaging Weights Leads to Wider Optima
    and Better Generalization", UAI 2018, section 3.2.
    """
    validation.check_int("batch_size", batch_size, low=1)
    layers = _batchnorm_layers(model)
    _check_data(data, model)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    for layer in layers:
        probe = keras.Model(inputs, layer.input)
        axis = layer.axis % len(layer.input.shape)
        total = total_sq = None
        count = 0
        for batch in _batches(data, batch_size):
            values = np.asarray(
                ops.convert_to_numpy(probe(batch, training=False)), "float64"
            )
            axes = tuple(i for i in range(values.ndim) if i != axis)
            batch_sum = values.sum(axis=axes)
            batch_sq = np.square(values).sum(axis=axes)
            total = batch_sum if total is None else total + batch_sum
            total_sq = batch_sq if total_sq is None else total_sq + batch_sq
            count += values.size // values.shape[axis]
        if count == 0:
            raise ValueError(
                "`data` yielded no batches, so BatchNorm statistics cannot be "
                f"recomputed. Received: data={type(data).__name__}"
            )
        mean = total / count
        variance = np.maximum(total_sq / count - np.square(mean), 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(
            variance.astype(layer.moving_variance.dtype)
        )


def _batchnorm_layers(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model. Received: "
            f"model={model!r} (of type {type(model).__name__})"
        )
    top = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    nested = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
        and not any(layer is t for t in top)
    ]
    if nested:
        raise ValueError(
            "BatchNorm statistics can only be recomputed for BatchNormalization "
            "layers at the top level of a functional or Sequential model; "
            f"these are nested in other layers: {[layer.name for layer in nested]}. "
            "Build the model from its layers without nesting (for instance "
            "with the functional API)."
        )
    if top and not getattr(model, "inputs", None):
        raise ValueError(
            "BatchNorm statistics can only be recomputed for a functional or "
            f"Sequential model with known inputs. Received: {type(model).__name__}"
        )
    return top


def _check_data(data, model):
    if isinstance(data, (str, bytes)) or not (
        arrays.is_arrays(data) or hasattr(data, "__iter__")
    ):
        raise TypeError(
            "`data` must be an array (or a list or dict of arrays), or an "
            "iterable of input batches. Received: "
            f"data={data!r} (of type {type(data).__name__})"
        )
    inputs = getattr(model, "inputs", None) or []
    if isinstance(data, list) and inputs and len(inputs) != len(data):
        raise ValueError(
            f"`data` as a list holds one array per model input; the model "
            f"takes {len(inputs)} input(s), the list has {len(data)} arrays. "
            "Pass an iterable of batches as a tuple or a generator instead."
        )
    if arrays.is_arrays(data) and not isinstance(data, dict) and inputs:
        parts = data if isinstance(data, list) else [data]
        for part, tensor in zip(parts, inputs):
            shape, expected = tuple(np.shape(part)), tuple(tensor.shape)
            if len(shape) != len(expected) or any(
                e is not None and e != s for e, s in zip(expected[1:], shape[1:])
            ):
                raise ValueError(
                    "`data` must have the model's input shape "
                    f"{expected}, batch axis first. Received: data of shape "
                    f"{shape}"
                )


def _batches(data, batch_size):
    if arrays.is_arrays(data):
        n = arrays.num_samples(data, "data")
        for start in range(0, n, batch_size):
            yield arrays.take(data, slice(start, start + batch_size))
        return
    for batch in data:
        if isinstance(batch, tuple):
            batch = batch[0]
        yield batch
