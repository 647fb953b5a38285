"""What the doctor reads off a compiled model: its loss, output and inputs.

The facts are plain values, so that `diagnostics.advise` reasons on them as
a pure function: the loss's name and `from_logits`, the output layer's
activation and width, the chance-level loss, and the probe inputs' scale.
"""

import math

import keras
import numpy as np

from keras_trainopt._internal import layers as layer_paths

_CLASSIFICATION = ("sparse_categorical_crossentropy",
                   "categorical_crossentropy", "binary_crossentropy")
# Layers that scale the inputs inside the model: the raw inputs' scale is
# then no problem.
_SCALING = (keras.layers.Rescaling, keras.layers.Normalization,
            keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def _loss_name_and_logits(loss):
    """`(snake_case name, from_logits)` of a compiled loss, or `(None, None)`."""
    if isinstance(loss, str):
        return loss.lower(), False
    if isinstance(loss, keras.losses.Loss):
        config = loss.get_config() or {}
        name = config.get("name") or type(loss).__name__
        return _snake(name), config.get("from_logits")
    if callable(loss):
        return _snake(getattr(loss, "__name__", "") or ""), False
    return None, None


def _snake(name):
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(char.lower())
    return "".join(out).replace("cross_entropy", "crossentropy")


def _output_layer(model):
    if not layer_paths.is_graph_model(model) or len(model.outputs) != 1:
        return None
    layer = model.layers[-1] if model.layers else None
    while layer is not None and layer_paths.is_graph_model(layer):
        layer = layer.layers[-1] if layer.layers else None
    return layer


def _activation_name(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    function = getattr(layer, "activation", None)
    name = getattr(function, "__name__", None)
    if name is None and isinstance(layer, keras.layers.ReLU):
        return "relu"
    return name


def describe(model):
    """`{"loss", "from_logits", "output_activation", "output_layer",
    "classes", "chance_loss"}`; each `None` where it cannot be told.

    `chance_loss` is ln(classes) for a categorical cross-entropy (one output
    per class) and ln(2) for a binary one with one output: the loss of a
    model that predicts equal odds (cs231n, "look for correct loss at
    chance performance"); classes of unequal frequency have a lower one.
    It is `None` for a model with regularization losses (L2 and the like):
    the loss `fit` reports then holds the penalty too, which has no chance
    level.
    """
    facts = dict.fromkeys(("loss", "from_logits", "output_activation",
                           "output_layer", "classes", "chance_loss"))
    loss = getattr(model, "loss", None)
    if isinstance(loss, (list, tuple, dict)):
        return facts  # several outputs: several losses
    name, from_logits = _loss_name_and_logits(loss)
    facts["loss"], facts["from_logits"] = name, from_logits
    layer = _output_layer(model)
    if layer is None:
        return facts
    facts["output_layer"] = layer.name
    facts["output_activation"] = _activation_name(layer)
    try:
        classes = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        classes = None
    facts["classes"] = classes if isinstance(classes, int) else None
    if name in _CLASSIFICATION and facts["classes"] and not _penalized(model):
        if name == "binary_crossentropy":
            facts["chance_loss"] = math.log(2) if classes == 1 else None
        elif classes > 1:
            facts["chance_loss"] = math.log(classes)
    return facts


def _penalized(model):
    """Whether the model adds regularization losses to the data loss."""
    try:
        return bool(model.losses)
    except (AttributeError, TypeError, ValueError):
        return True  # cannot tell: no chance level rather than a wrong one


def scales_inputs(model):
    """Whether the model's first layers rescale or normalize its inputs."""
    if not layer_paths.is_graph_model(model):
        return False
    for layer in layer_paths.children(model):
        if isinstance(layer, _SCALING):
            return True
        if layer_paths.is_graph_model(layer):
            return scales_inputs(layer)
        if layer.weights:  # the first layer with weights sees raw inputs
            return False
    return False


def input_scale(x):
    """`{"rms", "non_finite"}` of a float array of inputs, else `None`."""
    if isinstance(x, (dict, list, tuple)):
        return None
    try:
        values = np.asarray(keras.ops.convert_to_numpy(x))
    except (TypeError, ValueError):
        return None
    if not np.issubdtype(values.dtype, np.floating) or not values.size:
        return None
    finite = np.isfinite(values)
    kept = values[finite].astype("float64")
    rms = float(np.sqrt(np.mean(kept**2))) if kept.size else math.nan
    return {"rms": rms, "non_finite": int(values.size - finite.sum())}
