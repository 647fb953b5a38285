"""1/t decay: `lr0 / (1 + decay * t)`."""

import keras

from keras_trainopt.schedules import formulas
from keras_trainopt.schedules._decay_schedule import ContinuousDecaySchedule


@keras.saving.register_keras_serializable(package="keras_trainopt")
class InverseTimeDecaySchedule(ContinuousDecaySchedule):
    """1/t decay as a Keras `LearningRateSchedule`.

    The rate falls like `1/t`, slower than exponential decay: after `n / k`
    units it is `lr0 / (1 + n)`. Such a harmonic-like decay meets the classic
    conditions for stochastic approximation to converge.

        lr(t) = lr0 / (1 + decay * t)

    plus staircase, warm-up and floor (see `ContinuousDecaySchedule` and
    `DecaySchedule`). Keras' `InverseTimeDecay(lr0, decay_steps, decay_rate)`
    is the same curve with `decay = decay_rate / decay_steps`.

    Examples:
        >>> from keras_trainopt.schedules import InverseTimeDecaySchedule
        >>> schedule = InverseTimeDecaySchedule(0.1, decay=0.5)
        >>> schedule.value(2)  # 0.1 / (1 + 0.5 * 2)
        0.05

    Args:
        initial_learning_rate: the rate at t = 0 (> 0).
        decay: the constant `k` per unit (>= 0).
        staircase, every, min_learning_rate, warmup, steps_per_epoch, name:
            see `ContinuousDecaySchedule` and `DecaySchedule`.
        gradient_accumulation_steps: see `DecaySchedule`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate; Robbins and Monro (1951).
    """

    curve = staticmethod(formulas.inverse_time_decay)
