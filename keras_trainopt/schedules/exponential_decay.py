"""Exponential decay: `lr0 * exp(-decay * t)`."""

import keras

from keras_trainopt.schedules import formulas
from keras_trainopt.schedules._decay_schedule import ContinuousDecaySchedule


@keras.saving.register_keras_serializable(package="keras_trainopt")
class ExponentialDecaySchedule(ContinuousDecaySchedule):
    """Exponential decay as a Keras `LearningRateSchedule`.

    The rate shrinks by the same fraction every unit, so it falls quickly at
    first and never reaches zero; `decay` is the rate constant `k`, and the
    rate halves every `log(2) / k` units.

        lr(t) = lr0 * exp(-decay * t)

    plus staircase, warm-up and floor (see `ContinuousDecaySchedule` and
    `DecaySchedule`). Keras' `ExponentialDecay(lr0, decay_steps, decay_rate)`
    is the same curve with `decay = -log(decay_rate) / decay_steps`.

    Examples:
        >>> from keras_trainopt.schedules import ExponentialDecaySchedule
        >>> schedule = ExponentialDecaySchedule(0.1, decay=0.5)
        >>> round(schedule.value(2), 6)  # 0.1 * exp(-1)
        0.036788

    Args:
        initial_learning_rate: the rate at t = 0 (> 0).
        decay: the rate constant `k` per unit (>= 0).
        staircase, every, min_learning_rate, warmup, steps_per_epoch, name:
            see `ContinuousDecaySchedule` and `DecaySchedule`.
        gradient_accumulation_steps: see `DecaySchedule`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate.
    """

    curve = staticmethod(formulas.exponential_decay)
