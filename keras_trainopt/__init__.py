"""keras_trainopt: Keras 3 callbacks that babysit training for you."""

from keras_trainopt.averaging import recompute_batchnorm_statistics
from keras_trainopt.callbacks import ActivationMonitor
from keras_trainopt.callbacks import CheckpointEnsemble
from keras_trainopt.callbacks import ExponentialDecay
from keras_trainopt.callbacks import ExponentialMovingAverage
from keras_trainopt.callbacks import InverseTimeDecay
from keras_trainopt.callbacks import LossMonitor
from keras_trainopt.callbacks import OverfittingMonitor
from keras_trainopt.callbacks import SnapshotEnsemble
from keras_trainopt.callbacks import StepDecay
from keras_trainopt.callbacks import StochasticWeightAveraging
from keras_trainopt.callbacks import TrainingDoctor
from keras_trainopt.callbacks import UpdateRatioLogger
from keras_trainopt.ensembles import EnsembleModel
from keras_trainopt.ensembles import fit_seed_ensemble
from keras_trainopt.optimizers import nesterov_sgd
from keras_trainopt.schedules import CyclicCosineSchedule
from keras_trainopt.schedules import ExponentialDecaySchedule
from keras_trainopt.schedules import InverseTimeDecaySchedule
from keras_trainopt.schedules import StepDecaySchedule
from keras_trainopt.tuning import LearningRateFinderResult
from keras_trainopt.tuning import find_learning_rate

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "CheckpointEnsemble",
    "CyclicCosineSchedule",
    "EnsembleModel",
    "ExponentialDecay",
    "ExponentialDecaySchedule",
    "ExponentialMovingAverage",
    "InverseTimeDecay",
    "InverseTimeDecaySchedule",
    "LearningRateFinderResult",
    "LossMonitor",
    "OverfittingMonitor",
    "SnapshotEnsemble",
    "StepDecay",
    "StepDecaySchedule",
    "StochasticWeightAveraging",
    "TrainingDoctor",
    "UpdateRatioLogger",
    "find_learning_rate",
    "fit_seed_ensemble",
    "nesterov_sgd",
    "recompute_batchnorm_statistics",
]
