"""TensorBoard writing, the custom-scalars layout, results and the HTML report."""

from keras_trainopt.reporting.html_report import write_report
from keras_trainopt.reporting.layout import custom_scalars_layout
from keras_trainopt.reporting.results import log_results
from keras_trainopt.reporting.tensorboard import close_run
from keras_trainopt.reporting.tensorboard import open_run

__all__ = [
    "close_run",
    "custom_scalars_layout",
    "log_results",
    "open_run",
    "write_report",
]
