"""Learning-rate schedules: pure decay math, usable inside any optimizer."""

from keras_trainopt.schedules._decay_schedule import ContinuousDecaySchedule
from keras_trainopt.schedules._decay_schedule import DecaySchedule
from keras_trainopt.schedules.cyclic_cosine import CyclicCosineSchedule
from keras_trainopt.schedules.exponential_decay import ExponentialDecaySchedule
from keras_trainopt.schedules.inverse_time_decay import InverseTimeDecaySchedule
from keras_trainopt.schedules.step_decay import StepDecaySchedule

__all__ = [
    "ContinuousDecaySchedule",
    "CyclicCosineSchedule",
    "DecaySchedule",
    "ExponentialDecaySchedule",
    "InverseTimeDecaySchedule",
    "StepDecaySchedule",
]
