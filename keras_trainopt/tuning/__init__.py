"""Tuning: the learning-rate range test and the hyperparameter search.

Names are imported on first use (`_internal/lazy.py`): the range test runs
without keras-tuner, which only `search_hyperparameters` needs.
"""

import typing

from keras_trainopt._internal.lazy import lazy_exports
from keras_trainopt.tuning import suggestions

if typing.TYPE_CHECKING:  # for type checkers and IDEs
    from keras_trainopt.tuning.hyperparameter_config import HyperparameterConfig
    from keras_trainopt.tuning.hyperparameter_search import search_hyperparameters
    from keras_trainopt.tuning.lr_comparison import LearningRateComparison
    from keras_trainopt.tuning.lr_comparison import compare_learning_rates
    from keras_trainopt.tuning.lr_finder import LearningRateFinderResult
    from keras_trainopt.tuning.lr_finder import find_learning_rate
    from keras_trainopt.tuning.search_result import SearchResult
    from keras_trainopt.tuning.search_space import SearchSpace

__all__ = [
    "HyperparameterConfig",
    "LearningRateComparison",
    "LearningRateFinderResult",
    "SearchResult",
    "SearchSpace",
    "compare_learning_rates",
    "find_learning_rate",
    "search_hyperparameters",
    "suggestions",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "keras_trainopt.tuning.lr_comparison": [
        "LearningRateComparison",
        "compare_learning_rates",
    ],
    "keras_trainopt.tuning.hyperparameter_config": ["HyperparameterConfig"],
    "keras_trainopt.tuning.hyperparameter_search": ["search_hyperparameters"],
    "keras_trainopt.tuning.lr_finder": [
        "LearningRateFinderResult",
        "find_learning_rate",
    ],
    "keras_trainopt.tuning.search_result": ["SearchResult"],
    "keras_trainopt.tuning.search_space": ["SearchSpace"],
})
