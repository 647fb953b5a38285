"""The compatibility matrix (issue 19): every cell starts from float32."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
