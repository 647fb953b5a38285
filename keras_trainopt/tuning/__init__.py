"""Tuning: the learning-rate range test and its suggestion rules."""

from keras_trainopt.tuning import suggestions
from keras_trainopt.tuning.lr_finder import LearningRateFinderResult
from keras_trainopt.tuning.lr_finder import find_learning_rate

__all__ = ["LearningRateFinderResult", "find_learning_rate", "suggestions"]
