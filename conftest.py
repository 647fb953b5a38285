"""Root conftest: doctests in the package see the same quiet TensorFlow."""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The PyTorch-only module imports torch, which the default (TensorFlow)
# install does not have; its doctests are collected where torch is.
collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore.append("keras_trainopt/_internal/torch_ops.py")
