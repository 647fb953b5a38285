"""keras_trainopt: Keras 3 callbacks that babysit training for you."""

from keras_trainopt.averaging import recompute_batchnorm_statistics
from keras_trainopt.callbacks import ActivationMonitor
from keras_trainopt.callbacks import BackupAndRestore
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
from keras_trainopt.reporting import log_results
from keras_trainopt.reporting import write_report
from keras_trainopt.schedules import CyclicCosineSchedule
from keras_trainopt.schedules import ExponentialDecaySchedule
from keras_trainopt.schedules import InverseTimeDecaySchedule
from keras_trainopt.schedules import StepDecaySchedule
from keras_trainopt.tuning import HyperparameterConfig
from keras_trainopt.tuning import LearningRateFinderResult
from keras_trainopt.tuning import SearchResult
from keras_trainopt.tuning import SearchSpace
from keras_trainopt.tuning import find_learning_rate
from keras_trainopt.tuning import search_hyperparameters

__version__ = "0.1.0"

__all__ = [
    "ActivationMonitor",
    "BackupAndRestore",
    "CheckpointEnsemble",
    "CyclicCosineSchedule",
    "EnsembleModel",
    "ExponentialDecay",
    "ExponentialDecaySchedule",
    "ExponentialMovingAverage",
    "HyperparameterConfig",
    "InverseTimeDecay",
    "InverseTimeDecaySchedule",
    "LearningRateFinderResult",
    "LossMonitor",
    "OverfittingMonitor",
    "SearchResult",
    "SearchSpace",
    "SnapshotEnsemble",
    "StepDecay",
    "StepDecaySchedule",
    "StochasticWeightAveraging",
    "TrainingDoctor",
    "UpdateRatioLogger",
    "find_learning_rate",
    "fit_seed_ensemble",
    "log_results",
    "nesterov_sgd",
    "recompute_batchnorm_statistics",
    "search_hyperparameters",
    "write_report",
]
