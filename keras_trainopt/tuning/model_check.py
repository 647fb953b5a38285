"""Checks `build_model` once before a search, to fail early and clearly.

A search runs many trials in keras-tuner, which reports a broken
`build_model` only as failed trials. One model built from the middle of the
space, before any trial, turns the common mistakes (no model returned, not
compiled, a learning-rate schedule the search cannot set, an objective the
model does not log) into one error naming the argument.
"""

import math

import keras

from keras_trainopt._internal import optimizers
from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
from keras_trainopt.tuning.search_space import knob_scale


def _metric_names(model):
    """The metric names `fit` will log, or `None` when they cannot be told."""
    config = model.get_compile_config() or {}
    metrics = config.get("metrics") or []
    if not isinstance(metrics, (list, tuple)):
        return None
    names = {"loss"}
    for metric in metrics:
        if isinstance(metric, str):
            names.add(metric)
        elif isinstance(metric, dict) and "config" in metric:
            names.add(metric["config"].get("name"))
        else:
            return None
    return names


def check_model(build_model, space, objective):
    """Builds one model before the search, to fail early and clearly.

    Args:
        build_model: the search's `build_model(config)`.
        space: the `SearchSpace`; the model gets its middle configuration.
        objective: the objective's name (a string) or another objective.
    """
    middle = {"schedule": space.schedules[0]}
    for name, (low, high) in space.ranges.items():
        sampling = knob_scale(name)
        middle[name] = (math.sqrt(low * high) if sampling == "log"
                        else low if sampling == "int" else (low + high) / 2)
    values = space.values(middle)
    model = build_model(HyperparameterConfig(values))
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`build_model` must return a keras.Model. Received: "
            f"{type(model).__name__} from build_model={build_model!r}"
        )
    if not model.compiled:
        raise ValueError(
            "`build_model` must return a compiled model: call "
            "`model.compile(config.optimizer(), loss=..., metrics=[...])` "
            "inside it."
        )
    optimizers.check_settable_learning_rate(model.optimizer,
                                            "search_hyperparameters")
    names = _metric_names(model)
    if names is not None and isinstance(objective, str):
        base = objective.removeprefix("val_")
        if base not in names:
            raise ValueError(
                f"`objective` must be a metric the model logs; compile the "
                f"model with it, e.g. `metrics=[{base!r}]`. Metrics compiled: "
                f"{sorted(names)}. Received: objective={objective!r}"
            )
    keras.backend.clear_session()
