"""keras_trainopt: Keras 3 callbacks that babysit training for you.

Names are imported on first use (`_internal/lazy.py`): `import
keras_trainopt` loads no Keras backend, keras-tuner or matplotlib.
"""

import typing

from keras_trainopt._internal.lazy import lazy_exports

__version__ = "0.1.0"

if typing.TYPE_CHECKING:  # for type checkers and IDEs
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
    from keras_trainopt.tuning import LearningRateComparison
    from keras_trainopt.tuning import LearningRateFinderResult
    from keras_trainopt.tuning import SearchResult
    from keras_trainopt.tuning import SearchSpace
    from keras_trainopt.tuning import compare_learning_rates
    from keras_trainopt.tuning import find_learning_rate
    from keras_trainopt.tuning import search_hyperparameters

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
    "LearningRateComparison",
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
    "compare_learning_rates",
    "find_learning_rate",
    "fit_seed_ensemble",
    "log_results",
    "nesterov_sgd",
    "recompute_batchnorm_statistics",
    "search_hyperparameters",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "keras_trainopt.averaging": ["recompute_batchnorm_statistics"],
    "keras_trainopt.callbacks": [
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
    ],
    "keras_trainopt.ensembles": ["EnsembleModel", "fit_seed_ensemble"],
    "keras_trainopt.optimizers": ["nesterov_sgd"],
    "keras_trainopt.reporting": ["log_results", "write_report"],
    "keras_trainopt.schedules": [
        "CyclicCosineSchedule",
        "ExponentialDecaySchedule",
        "InverseTimeDecaySchedule",
        "StepDecaySchedule",
    ],
    "keras_trainopt.tuning": [
        "HyperparameterConfig",
        "LearningRateComparison",
        "LearningRateFinderResult",
        "SearchResult",
        "SearchSpace",
        "compare_learning_rates",
        "find_learning_rate",
        "search_hyperparameters",
    ],
})
