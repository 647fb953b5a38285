"""Step decay: multiply the learning rate by `factor` every `every` units."""

from __future__ import annotations

import types
from typing import Any

import keras

from keras_trainopt._internal import validation
from keras_trainopt.schedules import formulas
from keras_trainopt.schedules._decay_schedule import DecaySchedule


@keras.saving.register_keras_serializable(package="keras_trainopt")
class StepDecaySchedule(DecaySchedule):
    """Step decay as a Keras `LearningRateSchedule`.

    The rate drops by a constant factor at fixed intervals, the most common
    decay in practice ("reduce the learning rate by half every 5 epochs, or by
    0.1 every 20 epochs", cs231n). Inside the optimizer it costs nothing per
    step: no callback, no host round trip.

        lr(t) = lr0 * factor ** floor(t / every)

    plus the warm-up and floor of `DecaySchedule`. `t` is the optimizer step,
    or the epoch `floor(step / steps_per_epoch)` when `steps_per_epoch` is set.
    PyTorch's `StepLR(step_size=every, gamma=factor)` follows the same curve.

    Examples:
        >>> import keras
        >>> from keras_trainopt.schedules import StepDecaySchedule
        >>> schedule = StepDecaySchedule(0.1, factor=0.5, every=10)
        >>> [schedule.value(t) for t in (0, 9, 10, 25)]
        [0.1, 0.1, 0.05, 0.025]
        >>> optimizer = keras.optimizers.SGD(learning_rate=schedule)

    Args:
        initial_learning_rate: the rate at t = 0 (> 0).
        factor: the multiplier applied at each drop, in (0, 1).
        every: units between drops (int >= 1).
        min_learning_rate, warmup, steps_per_epoch, name: see
            `DecaySchedule`.
        gradient_accumulation_steps: see `DecaySchedule`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        factor: float = 0.5,
        every: int = 10,
        *,
        min_learning_rate: float = 0.0,
        warmup: int = 0,
        steps_per_epoch: int | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
    ) -> None:
        self.factor = validation.check_real(
            "factor", factor, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.every = validation.check_int("every", every, low=1)
        super().__init__(
            initial_learning_rate,
            min_learning_rate=min_learning_rate,
            warmup=warmup,
            steps_per_epoch=steps_per_epoch,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )

    def _shape(self, t: formulas.Value, xp: types.ModuleType) -> formulas.Value:
        return formulas.step_decay(t, self.factor, float(self.every), xp=xp)

    def _shape_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "every": self.every}
