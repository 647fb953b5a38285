"""Helpers for running Keras under distribution strategies."""

from keras_trainopt.distribute.multi_worker import patch_keras_for_multi_worker

__all__ = ["patch_keras_for_multi_worker"]
