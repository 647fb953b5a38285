"""Keras callbacks: one public callback per module."""

from keras_trainopt.callbacks.activation_monitor import ActivationMonitor
from keras_trainopt.callbacks.backup_and_restore import BackupAndRestore
from keras_trainopt.callbacks.checkpoint_ensemble import CheckpointEnsemble
from keras_trainopt.callbacks.exponential_decay import ExponentialDecay
from keras_trainopt.callbacks.exponential_moving_average import ExponentialMovingAverage
from keras_trainopt.callbacks.inverse_time_decay import InverseTimeDecay
from keras_trainopt.callbacks.loss_monitor import LossMonitor
from keras_trainopt.callbacks.overfitting_monitor import OverfittingMonitor
from keras_trainopt.callbacks.snapshot_ensemble import SnapshotEnsemble
from keras_trainopt.callbacks.step_decay import StepDecay
from keras_trainopt.callbacks.stochastic_weight_averaging import (
    StochasticWeightAveraging,
)
from keras_trainopt.callbacks.training_doctor import TrainingDoctor
from keras_trainopt.callbacks.update_ratio_logger import UpdateRatioLogger

__all__ = [
    "ActivationMonitor",
    "BackupAndRestore",
    "CheckpointEnsemble",
    "ExponentialDecay",
    "ExponentialMovingAverage",
    "InverseTimeDecay",
    "LossMonitor",
    "OverfittingMonitor",
    "SnapshotEnsemble",
    "StepDecay",
    "StochasticWeightAveraging",
    "TrainingDoctor",
    "UpdateRatioLogger",
]
