"""One sampled configuration of the three knobs, ready to train with."""

from __future__ import annotations

import collections.abc
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

# keras is loaded already: `schedule_registry` imports the callbacks
import keras

from keras_trainopt._internal import validation
from keras_trainopt.callbacks._decay_callback import DecayCallback
from keras_trainopt.tuning import schedule_registry


class HyperparameterConfig(collections.abc.Mapping[str, Any]):
    """The learning rate, decay schedule and regularization of one trial.

    `search_hyperparameters` hands one to `build_model` for every trial and
    returns the best as `SearchResult.best`. It reads like a dict
    (`config["dropout"]`) and turns itself into the pieces of a training
    run: `optimizer()`, `callbacks()` (the decay schedule) and
    `regularizer()`, so the best configuration can be trained again, longer
    or on more data, without copying numbers by hand.

    >>> from keras_trainopt.tuning import HyperparameterConfig
    >>> config = HyperparameterConfig({"learning_rate": 0.05,
    ...     "schedule": "step", "step_factor": 0.5, "step_every": 4,
    ...     "l2": 1e-4, "dropout": 0.2})
    >>> config.dropout, config["schedule"]
    (0.2, 'step')
    >>> type(config.decay_callback()).__name__
    'StepDecay'
    >>> config.decay_callback().learning_rate(8)  # 0.05 * 0.5 ** (8 // 4)
    0.0125

    Args:
        values: `{knob: value}` with the keys of `SearchSpace`: learning_rate,
            schedule, step_factor, step_every, exponential_decay,
            inverse_time_decay, l2, dropout (missing keys read as `None`).

    Reference: CS231n, "Neural Networks Part 3: Learning and Evaluation"
    (annealing the learning rate; hyperparameter optimization).
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(validation.check_mapping("values", values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of knob `key`, or `default` when it is not there."""
        return self._values.get(key, default)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={value!r}" for key, value in self._values.items()
            if value is not None
        )
        return f"HyperparameterConfig({shown})"

    @property
    def learning_rate(self) -> float | None:
        """The initial learning rate."""
        return self._values.get("learning_rate")

    @property
    def schedule(self) -> str:
        """"step", "exponential", "inverse_time" or "constant"."""
        return self._values.get("schedule") or "constant"

    @property
    def l2(self) -> float | None:
        """The L2 factor (`None` when not searched)."""
        return self._values.get("l2")

    @property
    def dropout(self) -> float:
        """Dropout rate, 0.0 when off: `Dropout(config.dropout)` works."""
        return self._values.get("dropout") or 0.0

    def describe_schedule(self) -> str:
        """The decay as text, e.g. "step(factor=0.5, every=4)"."""
        return schedule_registry.lookup(self.schedule).describe(self)

    def optimizer(
        self, momentum: float = 0.9, **kwargs: Any
    ) -> keras.optimizers.SGD:
        """`nesterov_sgd(learning_rate, momentum)`: SGD with Nesterov momentum."""
        from keras_trainopt.optimizers import nesterov_sgd

        return nesterov_sgd(self.learning_rate, momentum=momentum, **kwargs)

    def decay_callback(self, **kwargs: Any) -> DecayCallback | None:
        """The decay schedule as a keras_trainopt callback (`None` if constant).

        It starts from `learning_rate` whatever the optimizer was compiled
        with. Extra keyword arguments (e.g. `verbose=1`) go to the callback.
        """
        return schedule_registry.lookup(self.schedule).build_callback(
            self.learning_rate, self, **kwargs
        )

    def callbacks(self, **kwargs: Any) -> list[keras.callbacks.Callback]:
        """`[decay_callback()]`, or `[]` for a constant rate, for `fit`."""
        callback = self.decay_callback(**kwargs)
        return [] if callback is None else [callback]

    def regularizer(self) -> keras.regularizers.L2 | None:
        """`keras.regularizers.L2(l2)` for `kernel_regularizer=`, or `None`."""
        return keras.regularizers.L2(self.l2) if self.l2 else None

    def stretched(self, factor: float) -> HyperparameterConfig:
        """The same configuration with its decay spread over `factor`x the epochs.

        The search scales decay to the trials' length; to train the winner
        `factor` times longer at the same pace of annealing, stretch it: step
        decay drops every `round(factor * every)` epochs, exponential and 1/t
        decay constants are divided by `factor`, so the rate at epoch
        `factor * t` equals the original one at epoch `t`.

        >>> from keras_trainopt.tuning import HyperparameterConfig
        >>> config = HyperparameterConfig({"learning_rate": 0.1,
        ...     "schedule": "exponential", "exponential_decay": 0.3})
        >>> config.stretched(3)["exponential_decay"]
        0.1
        """

        factor = validation.check_real("factor", factor, low=0.0,
                                       low_open=True)
        values = dict(self._values)
        for name, (knob, _) in schedule_registry.knob_owners().items():
            if knob.stretch is not None and values.get(name) is not None:
                values[name] = knob.stretch(values[name], factor)
        return HyperparameterConfig(values)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy (for JSON)."""
        return dict(self._values)
