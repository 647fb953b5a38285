"""TensorBoard writing and the custom-scalars layout, in one place."""

from keras_trainopt.reporting.layout import custom_scalars_layout
from keras_trainopt.reporting.tensorboard import close_run
from keras_trainopt.reporting.tensorboard import open_run

__all__ = ["close_run", "custom_scalars_layout", "open_run"]
