"""Tuning: the learning-rate range test and the hyperparameter search."""

from keras_trainopt.tuning import suggestions
from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
from keras_trainopt.tuning.hyperparameter_search import search_hyperparameters
from keras_trainopt.tuning.lr_finder import LearningRateFinderResult
from keras_trainopt.tuning.lr_finder import find_learning_rate
from keras_trainopt.tuning.search_result import SearchResult
from keras_trainopt.tuning.search_space import SearchSpace

__all__ = [
    "HyperparameterConfig",
    "LearningRateFinderResult",
    "SearchResult",
    "SearchSpace",
    "find_learning_rate",
    "search_hyperparameters",
    "suggestions",
]
