"""`EnsembleModel`: one Keras model that averages its members' predictions."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops
from keras import tree

# Inputs and outputs: backend tensors or NumPy arrays, or a list, tuple or
# dict of them (whatever structure the members take and give).
Tensors = Any


@keras.saving.register_keras_serializable(package="keras_trainopt")
class EnsembleModel(keras.Model):
    """A Keras model whose output is the mean of its members' outputs.

    Independently trained models make partly independent errors, so the
    average of their predictions is more accurate than any one of them, with
    diminishing returns as members are added (cs231n, "Model ensembles").
    The ensemble is an ordinary Keras model: `predict`, `evaluate` (after
    `compile`) and `save` work as usual, and a saved ensemble loads with
    `keras.models.load_model(path)`, no `custom_objects` needed once
    `keras_trainopt` is imported.

    Outputs are averaged as they are: average probabilities (softmax or
    sigmoid outputs), which is the usual choice; for a model that outputs
    logits the mean of logits is a geometric-mean ensemble instead.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import EnsembleModel
        >>> def member(seed):
        ...     keras.utils.set_random_seed(seed)
        ...     return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> members = [member(0), member(1)]
        >>> ensemble = EnsembleModel(members)
        >>> x = np.ones((4, 3), "float32")
        >>> mean = (members[0].predict(x, verbose=0)
        ...         + members[1].predict(x, verbose=0)) / 2
        >>> np.allclose(ensemble.predict(x, verbose=0), mean)
        True

    Args:
        models: the members, a non-empty list of Keras models that take the
            same inputs and give outputs of the same structure and shape.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    model ensembles; T. G. Dietterich, "Ensemble Methods in Machine
    Learning", 2000.
    """

    def __init__(
        self,
        models: list[keras.Model] | tuple[keras.Model, ...],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(models, keras.Model) or not isinstance(
            models, (list, tuple)
        ):
            raise TypeError(
                "`models` must be a list of keras.Model instances. Received: "
                f"models={models!r} (of type {type(models).__name__})"
            )
        if not models:
            raise ValueError("`models` must not be empty. Received: models=[]")
        for i, model in enumerate(models):
            if not isinstance(model, keras.Model):
                raise TypeError(
                    "`models` must be a list of keras.Model instances. "
                    f"Received: models[{i}]={model!r} (of type "
                    f"{type(model).__name__})"
                )
        shapes = [_shapes(model) for model in models]
        for i, member_shapes in enumerate(shapes):
            if None not in (shapes[0], member_shapes) and (
                member_shapes != shapes[0]
            ):
                raise ValueError(
                    "`models` must take the same inputs and give outputs of "
                    "the same shapes. Received: models[0] with (inputs, "
                    f"outputs) of shapes {shapes[0]}, models[{i}] with "
                    f"{member_shapes}"
                )
        self.members: list[keras.Model] = list(models)
        if all(m.built for m in self.members):
            self.built = True

    def call(self, inputs: Tensors, training: bool | None = None) -> Tensors:
        """The mean of the members' outputs, structure by structure."""
        outputs = [m(inputs, training=training) for m in self.members]
        return tree.map_structure(
            lambda *values: ops.mean(ops.stack(values), axis=0), *outputs
        )

    def build(self, input_shape: Any) -> None:
        """Builds the members that are not built yet."""
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        """The name, `trainable` and the serialized members."""
        config = {"name": self.name, "trainable": self.trainable}
        config["models"] = [
            keras.saving.serialize_keras_object(m) for m in self.members
        ]
        return config

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        custom_objects: dict[str, Any] | None = None,
    ) -> EnsembleModel:
        """The ensemble that `get_config` describes, its members rebuilt."""
        config = dict(config)
        models = [
            keras.saving.deserialize_keras_object(
                m, custom_objects=custom_objects
            )
            for m in config.pop("models")
        ]
        return cls(models, **config)


def _shapes(model: keras.Model) -> tuple[list[tuple[Any, ...]], ...] | None:
    """The (input shapes, output shapes) of a model with known tensors, or
    `None` (a subclassed or not yet built model)."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return tuple(
        [tuple(tensor.shape) for tensor in tree.flatten(tensors)]
        for tensors in (inputs, outputs)
    )
