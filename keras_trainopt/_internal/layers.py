"""A model's layers, nested functional sub-models included, and their outputs.

`keras.applications` backbones and KerasHub models are functional models
used as one layer of the model that is trained. Their layers' `output`
tensors belong to the sub-model's own graph, so a probe built from
`layer.output` and the outer model's `inputs` is "not connected". Here the
outer model's graph is replayed instead, going down into every nested
Sequential or functional sub-model, and the outputs of the chosen layers are
recorded on the way: one forward pass for all of them.

Names are paths: a top-level layer keeps its name (`"dense"`), a layer inside
a sub-model is `"<sub-model>/<layer>"` (`"mobilenetv3small/re_lu_3"`), and so
on down.

Relies on two private Keras methods of functional models,
`_standardize_inputs` and `_run_through_graph` (the ones `Functional.call`
uses), present throughout Keras 3.
"""

import functools

import keras
from keras.src.models.functional import Functional

SEP = "/"

# Layers that apply a nonlinearity by themselves.
_ACTIVATION_LAYERS = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
    keras.layers.PReLU, keras.layers.ELU, keras.layers.Softmax,
)


def is_graph_model(layer):
    """Whether `layer` is a model whose layers can be walked and replayed."""
    return isinstance(layer, (Functional, keras.Sequential))


def is_activation_layer(layer):
    """Whether `layer` applies a nonlinearity.

    An activation layer (`Activation`, `ReLU`, `LeakyReLU`, `PReLU`, `ELU`,
    `Softmax`), or a layer with a fused `activation` other than linear (e.g.
    `Dense(64, activation="relu")`).
    """
    if isinstance(layer, _ACTIVATION_LAYERS):
        return True
    function = getattr(layer, "activation", None)
    if not callable(function):
        return False
    return getattr(function, "__name__", None) not in ("linear", None)


def children(model):
    """The layers of a graph model, in graph order, without `InputLayer`s."""
    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)]


def walk(model, prefix=""):
    """Yields `(path, layer)` for every layer, going into sub-models.

    A nested sub-model comes first, then its own layers (`"<sub>/<layer>"`).
    """
    for layer in children(model):
        path = prefix + layer.name
        yield path, layer
        if is_graph_model(layer):
            yield from walk(layer, path + SEP)


def default_paths(model):
    """The layers probed by default.

    Every top-level layer (a nested sub-model counts as one: its output), and
    inside nested sub-models, at any depth, the activation layers only (see
    `is_activation_layer`): a backbone has hundreds of layers, and the
    saturated and dead fractions are about the nonlinearities.
    """
    return [path for path, layer in walk(model)
            if SEP not in path or is_activation_layer(layer)]


def _unpack_singleton(outputs):
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs


def run_recording(model, inputs, wanted, record, prefix=""):
    """Runs `model` on `inputs`, layer by layer, and returns its outputs.

    The output of each layer whose path is in `wanted` goes into `record`
    (`{path: output}`; the first call of a shared layer). Nested graph
    sub-models are replayed the same way; any other layer, a subclassed
    sub-model included, is called as a whole. Training-mode arguments come
    from the call context of the caller (e.g. `predict`: inference).
    """

    def call(layer, *args, **kwargs):
        path = prefix + layer.name
        if is_graph_model(layer):
            sub_inputs = args[0] if args else kwargs["inputs"]
            outputs = run_recording(layer, sub_inputs, wanted, record,
                                    path + SEP)
        else:
            outputs = layer(*args, **kwargs)
        if path in wanted and path not in record:
            record[path] = outputs
        return outputs

    graph = model
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:  # built without a known input: a plain chain
            outputs = inputs
            for layer in children(model):
                outputs = call(layer, outputs)
            return outputs
    struct = getattr(graph, "_inputs_struct", None)
    flat = keras.tree.flatten(inputs)
    if (struct is not None and not isinstance(inputs, dict)
            and len(flat) == len(keras.tree.flatten(struct))):
        # e.g. one tensor for a `[input]` backbone: no structure warning
        inputs = keras.tree.pack_sequence_as(struct, flat)
    inputs = graph._standardize_inputs(inputs)
    outputs = graph._run_through_graph(
        inputs, operation_fn=lambda op: functools.partial(call, op)
    )
    return _unpack_singleton(outputs)


class RecordingModel(keras.Model):
    """The outputs of chosen layers of `target` (paths), in one forward pass.

    A model, so that `predict_on_batch` compiles it on every backend; it
    tracks `target`, so it uses `target`'s own variables. Nothing is added to
    `target`'s graph (no new nodes: `layer.output` stays usable).
    """

    def __init__(self, target, paths, name="activation_probe"):
        super().__init__(name=name)
        self.target = target
        self.paths = list(paths)
        self.built = True

    def call(self, inputs):
        record = {}
        run_recording(self.target, inputs, set(self.paths), record)
        return [record[path] for path in self.paths]
