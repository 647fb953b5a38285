"""The base of the decay schedules: warm-up, floor and epoch/step units."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any
from typing import ClassVar
from typing import TypeVar

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import validation
from keras_trainopt.schedules import formulas

# A backend tensor (TensorFlow, JAX or PyTorch): Keras names no type for it.
Tensor = Any

_Schedule = TypeVar("_Schedule", bound="DecaySchedule")


class DecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A `LearningRateSchedule` made of a decay shape, a warm-up and a floor.

    Subclasses give the shape, `_shape(t, xp)`, and its arguments in
    `_shape_config()`; this class adds what every decay shares:

        lr(t) = max(min_learning_rate, warmup_then_decay(t))

    with `t = step` or, when `steps_per_epoch` is set, the epoch index
    `t = floor(step / steps_per_epoch)`, so one schedule serves both units.
    Keras calls a schedule with its optimizer's count of `apply` calls,
    which under gradient accumulation counts batches: with
    `gradient_accumulation_steps=k` the schedule counts updates instead,
    `t = floor(step / k)`, as the decay callbacks do in `unit="step"`.

    Args:
        initial_learning_rate: the rate when the decay starts (> 0).
        min_learning_rate: the floor (>= 0, at most `initial_learning_rate`).
        warmup: units of linear warm-up before the decay starts (int >= 0).
        steps_per_epoch: `None` to decay per optimizer step; an int to decay
            per epoch inside the optimizer, counting `steps_per_epoch` steps as
            one epoch (batches, under gradient accumulation).
        gradient_accumulation_steps: the optimizer's (int >= 1, or `None`):
            decay per update, `k` batches, rather than per batch. Only
            without `steps_per_epoch`.
        name: optional name of the schedule.

    Example, a custom shape (cosine over 100 units) with the shared warm-up:

    >>> import math
    >>> from keras_trainopt.schedules import DecaySchedule
    >>> class Cosine(DecaySchedule):
    ...     def _shape(self, t, xp):
    ...         return 0.5 * (1 + xp.cos(math.pi * xp.minimum(t, 100) / 100))
    ...     def _shape_config(self):
    ...         return {}
    >>> schedule = Cosine(0.1, warmup=4)
    >>> [round(schedule.value(t), 4) for t in (0, 4, 54, 104)]
    [0.02, 0.1, 0.05, 0.0]

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate; Goyal et al., "Accurate, Large Minibatch
    SGD", 2017 (linear warm-up).
    """

    def __init__(
        self,
        initial_learning_rate: float,
        *,
        min_learning_rate: float = 0.0,
        warmup: int = 0,
        steps_per_epoch: int | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ) -> None:
        self.initial_learning_rate = validation.check_float32(
            "initial_learning_rate",
            validation.check_real(
                "initial_learning_rate",
                initial_learning_rate,
                low=0.0,
                low_open=True,
            ),
        )
        self.min_learning_rate = validation.check_float32(
            "min_learning_rate",
            validation.check_real("min_learning_rate", min_learning_rate, low=0.0),
        )
        if self.min_learning_rate > self.initial_learning_rate:
            raise ValueError(
                "`min_learning_rate` must be <= `initial_learning_rate`. "
                f"Received: min_learning_rate={self.min_learning_rate:g}, "
                f"initial_learning_rate={self.initial_learning_rate:g}"
            )
        self.warmup = validation.check_int("warmup", warmup, low=0)
        self.steps_per_epoch = validation.check_int(
            "steps_per_epoch", steps_per_epoch, low=1, allow_none=True
        )
        self.gradient_accumulation_steps = validation.check_int(
            "gradient_accumulation_steps", gradient_accumulation_steps, low=1,
            allow_none=True,
        )
        if self.steps_per_epoch is not None and (
                self.gradient_accumulation_steps is not None):
            raise ValueError(
                "`gradient_accumulation_steps` only applies without "
                "`steps_per_epoch`: an epoch is counted in the steps Keras "
                "calls the schedule with, which are batches under gradient "
                "accumulation, so give `steps_per_epoch` in batches. "
                f"Received: steps_per_epoch={self.steps_per_epoch}, "
                "gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"`name` must be a string or None. Received: name={name!r}"
            )
        self.name = name

    def _shape(self, t: formulas.Value, xp: types.ModuleType) -> formulas.Value:
        """The decay multiplier at decay time `t` >= 0 (1 at t = 0)."""
        raise NotImplementedError

    def _shape_config(self) -> dict[str, Any]:
        """The constructor arguments that define the shape."""
        raise NotImplementedError

    def _learning_rate(
        self, t: formulas.Value, xp: types.ModuleType
    ) -> formulas.Value:
        return formulas.warmup_then_decay(
            t,
            self.initial_learning_rate,
            lambda s: self._shape(s, xp),
            # floats: JAX cannot mix a Python int >= 2**31 with a tensor
            warmup=float(self.warmup),
            min_learning_rate=self.min_learning_rate,
            xp=xp,
        )

    def value(self, t: float) -> float:
        """The learning rate at time `t` in units, as a Python float.

        `t` counts epochs when `steps_per_epoch` is set and steps otherwise.
        Computed in float64 with NumPy; use it to plot or check the curve.
        """
        return float(self._learning_rate(np.float64(t), np))

    def __call__(self, step: int | Tensor) -> Tensor:
        """The rate of optimizer step `step`, a float32 scalar tensor."""
        t = ops.cast(step, "float32")
        if self.steps_per_epoch is not None:
            t = ops.floor(t / float(self.steps_per_epoch))
        elif self.gradient_accumulation_steps is not None:
            t = ops.floor(t / float(self.gradient_accumulation_steps))
        return self._learning_rate(t, ops)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that `from_config` rebuilds it."""
        return {
            "initial_learning_rate": self.initial_learning_rate,
            **self._shape_config(),
            "min_learning_rate": self.min_learning_rate,
            "warmup": self.warmup,
            "steps_per_epoch": self.steps_per_epoch,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "name": self.name,
        }

    @classmethod
    def from_config(cls: type[_Schedule], config: dict[str, Any]) -> _Schedule:
        """The schedule that `get_config` describes: `cls(**config)`."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ContinuousDecaySchedule(DecaySchedule):
    """A smooth decay `curve(decay, t)` with an optional staircase.

    With `staircase=True` the rate is held constant over blocks of `every`
    units and follows the curve at their starts: `t` becomes
    `every * floor(t / every)`, as with `staircase=True` in Keras' own decays.

    Args:
        initial_learning_rate: the rate at t = 0 (> 0).
        decay: the decay constant `k` (>= 0), per unit.
        staircase: hold the rate constant within blocks of `every` units.
        every: block length for `staircase=True` (int >= 1).
        min_learning_rate, warmup, steps_per_epoch, name: see
            `DecaySchedule`.
        gradient_accumulation_steps: see `DecaySchedule`.

    >>> from keras_trainopt.schedules import ExponentialDecaySchedule
    >>> held = ExponentialDecaySchedule(0.1, 0.5, staircase=True, every=2)
    >>> [round(held.value(t), 4) for t in range(4)]  # exp(-0.5 * 2) at t=2
    [0.1, 0.1, 0.0368, 0.0368]

    Reference: cs231n, "Neural Networks Part 3", annealing the learning rate
    (exponential and 1/t decay); `keras.optimizers.schedules`' staircase.
    """

    # The multiplier as a function of (t, decay, xp), set by subclasses.
    curve: ClassVar[Callable[..., formulas.Value] | None] = None

    def __init__(
        self,
        initial_learning_rate: float,
        decay: float = 0.1,
        *,
        staircase: bool = False,
        every: int = 1,
        min_learning_rate: float = 0.0,
        warmup: int = 0,
        steps_per_epoch: int | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ) -> None:
        self.decay = validation.check_float32(
            "decay", validation.check_real("decay", decay, low=0.0)
        )
        self.staircase = validation.check_bool("staircase", staircase)
        self.every = validation.check_int("every", every, low=1)
        if self.every != 1 and not self.staircase:
            raise ValueError(
                "`every` only applies with staircase=True. "
                f"Received: every={self.every}, staircase={self.staircase}"
            )
        super().__init__(
            initial_learning_rate,
            min_learning_rate=min_learning_rate,
            warmup=warmup,
            steps_per_epoch=steps_per_epoch,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )

    def _shape(self, t: formulas.Value, xp: types.ModuleType) -> formulas.Value:
        if self.staircase:
            t = formulas.staircase_time(t, float(self.every), xp=xp)
        curve = type(self).curve
        if curve is None:
            raise NotImplementedError(f"{type(self).__name__} sets no `curve`.")
        return curve(t, self.decay, xp=xp)

    def _shape_config(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "staircase": self.staircase,
            "every": self.every,
        }
