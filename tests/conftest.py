"""Shared test set-up: quiet TensorFlow; every test seeded, in float32.

One conftest for the whole tree: the suite runs with `--doctest-modules`,
which imports every `conftest.py` as a module named `conftest`, so a second
one in a subfolder collides with this one.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    # without a gc.collect() per test: on a heap that holds TensorFlow it
    # took 0.3-4.5 s a test, about a third of the suite's time
    keras.backend.clear_session(free_memory=False)
