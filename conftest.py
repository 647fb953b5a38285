"""Root conftest: doctests in the package see the same quiet TensorFlow."""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The backend-only modules import their backend, which an install for
# another backend need not have; their doctests are collected where it is.
collect_ignore = [
    f"keras_trainopt/_internal/{module}_ops.py"
    for module, package in (("torch", "torch"), ("tf", "tensorflow"))
    if importlib.util.find_spec(package) is None
]
