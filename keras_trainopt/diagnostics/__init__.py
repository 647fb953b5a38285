"""What the monitors conclude, as pure functions of recorded numbers."""

from keras_trainopt.diagnostics.activations import activation_stats
from keras_trainopt.diagnostics.advice import Advice
from keras_trainopt.diagnostics.advice import advise
from keras_trainopt.diagnostics.generalization import diagnose_fit
from keras_trainopt.diagnostics.loss_curve import Diagnosis
from keras_trainopt.diagnostics.loss_curve import RunningSmooth
from keras_trainopt.diagnostics.loss_curve import diagnose_loss_curve
from keras_trainopt.diagnostics.loss_curve import smooth
from keras_trainopt.diagnostics.update_ratio import update_ratio

__all__ = [
    "Advice",
    "Diagnosis",
    "RunningSmooth",
    "activation_stats",
    "advise",
    "diagnose_fit",
    "diagnose_loss_curve",
    "smooth",
    "update_ratio",
]
