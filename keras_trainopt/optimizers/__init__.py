"""Optimizer factories over the Keras optimizers."""

from keras_trainopt.optimizers.nesterov_sgd import nesterov_sgd

__all__ = ["nesterov_sgd"]
