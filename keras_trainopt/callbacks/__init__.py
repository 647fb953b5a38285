"""Keras callbacks: one public callback per module."""

from keras_trainopt.callbacks.exponential_decay import ExponentialDecay
from keras_trainopt.callbacks.inverse_time_decay import InverseTimeDecay
from keras_trainopt.callbacks.step_decay import StepDecay

__all__ = ["ExponentialDecay", "InverseTimeDecay", "StepDecay"]
