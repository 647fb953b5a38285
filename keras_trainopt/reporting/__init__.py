"""TensorBoard writing, the custom-scalars layout, results and the HTML report.

Names are imported on first use (`_internal/lazy.py`): the monitors, which
only write, do not load the report's reader and charts.
"""

import typing

from keras_trainopt._internal.lazy import lazy_exports

if typing.TYPE_CHECKING:  # for type checkers and IDEs
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

__getattr__, __dir__ = lazy_exports(__name__, {
    "keras_trainopt.reporting.html_report": ["write_report"],
    "keras_trainopt.reporting.layout": ["custom_scalars_layout"],
    "keras_trainopt.reporting.results": ["log_results"],
    "keras_trainopt.reporting.tensorboard": ["close_run", "open_run"],
})
