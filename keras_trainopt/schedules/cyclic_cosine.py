"""Cyclic cosine annealing with warm restarts (snapshot ensembles)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_trainopt._internal import validation
from keras_trainopt.schedules import formulas
from keras_trainopt.schedules._decay_schedule import Tensor


@keras.saving.register_keras_serializable(package="keras_trainopt")
class CyclicCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing restarted every `cycle_steps` steps.

    Each cycle drives the model into a local minimum with a falling rate,
    and the restart kicks it out towards another: the end points of the
    cycles are good and diverse models, the snapshots of a snapshot ensemble
    (Huang et al. 2017). With `t` the 0-based optimizer step,

        lr(t) = lr0 / 2 * (cos(pi * (t mod L) / L) + 1),   L = cycle_steps

    which is Huang et al.'s formula with their 1-based iteration `t + 1`.
    `keras_trainopt.SnapshotEnsemble` sets `L = ceil(total_steps / cycles)`.

    Examples:
        >>> from keras_trainopt.schedules import CyclicCosineSchedule
        >>> schedule = CyclicCosineSchedule(0.1, cycle_steps=4)
        >>> [round(schedule.value(t), 4) for t in range(6)]
        [0.1, 0.0854, 0.05, 0.0146, 0.1, 0.0854]

    Args:
        initial_learning_rate: `lr0`, the rate at the start of each cycle (> 0).
        cycle_steps: `L`, steps per cycle (int >= 1).
        name: optional name of the schedule.

    Reference: G. Huang et al., "Snapshot Ensembles: Train 1, get M for
    free", ICLR 2017, eq. 2; I. Loshchilov and F. Hutter, "SGDR", ICLR 2017.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        cycle_steps: int,
        name: str | None = None,
    ) -> None:
        self.initial_learning_rate = validation.check_float32(
            "initial_learning_rate",
            validation.check_real("initial_learning_rate",
                                  initial_learning_rate, low=0.0,
                                  low_open=True),
        )
        self.cycle_steps = validation.check_int("cycle_steps", cycle_steps, low=1)
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"`name` must be a string or None. Received: name={name!r}"
            )
        self.name = name

    def value(self, t: float) -> float:
        """The rate at step `t` as a Python float (exact, float64)."""
        validation.check_real("t", t, low=0.0)
        return float(
            self.initial_learning_rate
            * formulas.cyclic_cosine(np.float64(t), self.cycle_steps)
        )

    def __call__(self, step: int | Tensor) -> Tensor:
        """The rate of optimizer step `step`, a float32 scalar tensor."""
        t = ops.cast(step, "float32")
        return self.initial_learning_rate * formulas.cyclic_cosine(
            t, float(self.cycle_steps), xp=ops
        )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that `from_config` rebuilds it."""
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "cycle_steps": self.cycle_steps,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CyclicCosineSchedule:
        """The schedule that `get_config` describes: `cls(**config)`."""
        return cls(**config)
