"""keras_trainopt: Keras 3 callbacks that babysit training for you."""

from keras_trainopt.callbacks import ActivationMonitor
from keras_trainopt.callbacks import ExponentialDecay
from keras_trainopt.callbacks import InverseTimeDecay
from keras_trainopt.callbacks import LossMonitor
from keras_trainopt.callbacks import OverfittingMonitor
from keras_trainopt.callbacks import StepDecay
from keras_trainopt.callbacks import UpdateRatioLogger
from keras_trainopt.optimizers import nesterov_sgd
from keras_trainopt.schedules import ExponentialDecaySchedule
from keras_trainopt.schedules import InverseTimeDecaySchedule
from keras_trainopt.schedules import StepDecaySchedule

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "ExponentialDecay",
    "ExponentialDecaySchedule",
    "InverseTimeDecay",
    "InverseTimeDecaySchedule",
    "LossMonitor",
    "OverfittingMonitor",
    "StepDecay",
    "StepDecaySchedule",
    "UpdateRatioLogger",
    "nesterov_sgd",
]
