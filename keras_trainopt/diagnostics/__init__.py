"""What the monitors conclude, as pure functions of recorded numbers."""

from keras_trainopt.diagnostics.loss_curve import Diagnosis
from keras_trainopt.diagnostics.loss_curve import diagnose_loss_curve
from keras_trainopt.diagnostics.loss_curve import smooth

__all__ = ["Diagnosis", "diagnose_loss_curve", "smooth"]
