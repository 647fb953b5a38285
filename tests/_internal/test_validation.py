import math

import numpy as np
import pytest

from keras_trainopt._internal import validation


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (1.5, dict(low=0, high=1, low_open=True, high_open=True),
         "`x` must be in (0, 1). Received: x=1.5"),
        (0.0, dict(low=0, low_open=True), "`x` must be > 0. Received: x=0"),
        (-1, dict(low=0), "`x` must be >= 0. Received: x=-1"),
        (float("nan"), {}, "`x` must be a finite number. Received: x=nan"),
        (math.inf, {}, "`x` must be a finite number. Received: x=inf"),
    ],
)
def test_check_real_value_errors(value, kwargs, message):
    with pytest.raises(ValueError) as info:
        validation.check_real("x", value, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [True, "0.1", None, [0.1]])
def test_check_real_type_errors(value):
    with pytest.raises(TypeError, match=r"`x` must be a number\. Received: x="):
        validation.check_real("x", value)


def test_check_real_accepts_ints_and_none():
    assert validation.check_real("x", 3) == 3.0
    assert isinstance(validation.check_real("x", 3), float)
    assert validation.check_real("x", None, allow_none=True) is None


def test_check_int():
    assert validation.check_int("n", 3, low=1) == 3
    with pytest.raises(ValueError, match=r"`n` must be >= 1\. Received: n=0"):
        validation.check_int("n", 0, low=1)
    for bad in (2.0, True, "2"):
        with pytest.raises(TypeError, match="`n` must be an integer"):
            validation.check_int("n", bad)


def test_check_bool_and_choice():
    assert validation.check_bool("b", False) is False
    with pytest.raises(TypeError, match="`b` must be True or False"):
        validation.check_bool("b", 1)
    with pytest.raises(
        ValueError, match=r"`unit` must be one of 'epoch', 'step'\. "
        r"Received: unit='epochs'"
    ):
        validation.check_choice("unit", "epochs", ("epoch", "step"))


# -- helpers added for the fuzz findings (issue 7) ---------------------------


def test_check_real_allows_non_finite_on_request():
    assert math.isnan(validation.check_real("x", float("nan"), finite=False))
    assert validation.check_real("x", math.inf, finite=False) == math.inf


def test_check_path(tmp_path):
    assert validation.check_path("d", tmp_path) == str(tmp_path)
    assert validation.check_path("d", None, allow_none=True) is None
    for bad in (5, b"/tmp", None, ["a"]):
        with pytest.raises(TypeError, match=r"`d` must be a path"):
            validation.check_path("d", bad)
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError, match=r"`d` must be a non-empty path"):
            validation.check_path("d", bad)
    file = tmp_path / "f.txt"
    file.write_text("x")
    with pytest.raises(ValueError, match=r"`d` must be a folder"):
        validation.check_path("d", file)
    assert validation.check_path("f", file, folder=False) == str(file)
    with pytest.raises(ValueError, match=r"`f` must be a file path"):
        validation.check_path("f", tmp_path, folder=False)


def test_check_floats():
    assert validation.check_floats("v", [1, 2.5]).dtype == np.float64
    half = np.ones(3, "float16")
    assert validation.check_floats("v", half, float64=False).dtype == np.float16
    for bad in ("1.5", None, ["a"], [1, None], 1j, {"a": 1}):
        with pytest.raises(TypeError, match=r"`v` must be an array"):
            validation.check_floats("v", bad)
    with pytest.raises(ValueError, match=r"`v` must be 1-D"):
        validation.check_floats("v", [[1.0]], ndim=1)


def test_check_floats_reads_bfloat16_and_float8_exactly():
    # before: TypeError for bfloat16 arrays (NumPy's kind "V"), so
    # ActivationMonitor crashed under the `mixed_bfloat16` policy
    import ml_dtypes

    values = [1.0, -0.5, 3.140625, 448.0, -1e-3]
    for dtype in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn):
        stored = np.array(values, dtype=dtype)
        want = [float(v) for v in stored]  # each value as Python reads it
        got = validation.check_floats("v", stored, float64=False)
        assert got.dtype == np.float32 and got.tolist() == want
        assert validation.check_floats("v", stored).dtype == np.float64
    for bad in (np.zeros(2, ml_dtypes.int4), np.zeros(2, [("a", "f4")]),
                np.zeros(2, "V8")):
        with pytest.raises(TypeError, match=r"`v` must be an array"):
            validation.check_floats("v", bad)


def test_check_mapping_and_inputs():
    assert validation.check_mapping("m", {}) == {}
    with pytest.raises(TypeError, match=r"`m` must be a dict"):
        validation.check_mapping("m", [("a", 1)])
    x = np.ones((2, 3))
    for good in (x, [x, x], {"a": x}):
        assert validation.check_inputs("x", good) is good
    for bad in (None, "abc", 5, np.float32(1), [], [[1.0, 2.0]]):
        with pytest.raises(TypeError, match=r"`x` must be a batch of inputs"):
            validation.check_inputs("x", bad)


def test_check_int_high():
    assert validation.check_int("n", 5, high=5) == 5
    with pytest.raises(ValueError, match=r"`n` must be <= 5\. Received: n=6"):
        validation.check_int("n", 6, high=5)


def test_check_float32():
    assert validation.check_float32("r", 3e38) == 3e38
    with pytest.raises(ValueError, match=r"`r` must be at most 3\.40282e\+38"):
        validation.check_float32("r", 1e39)


@pytest.mark.parametrize("value", [1.1e-41, -1e-39, 1e-320])
def test_float32_refuses_values_flushed_to_zero(value):
    # found by fuzzing: a schedule with initial_learning_rate=1.1e-41 gave
    # rates of 0, and find_learning_rate(lr_min=1e-320) a sweep up to inf
    with pytest.raises(ValueError, match=r"`rate` must be 0 or at least 1.17549e-38"
                                         r".*Received: rate="):
        validation.check_float32("rate", value)
    assert validation.check_float32("rate", 0.0) == 0.0
    assert validation.check_float32("rate", 1.2e-38) == 1.2e-38


def test_check_built_names_the_caller_and_the_way_out():
    from tests.callbacks.helpers import Net

    model = Net()
    with pytest.raises(ValueError) as raised:
        validation.check_built(model, "UpdateRatioLogger",
                               "measures the updates of the model's weights")
    text = str(raised.value)
    assert text.startswith("UpdateRatioLogger measures the updates")
    assert "not built" in text and "`model(x[:1])`" in text
    model(np.zeros((1, 3), "float32"))
    validation.check_built(model, "UpdateRatioLogger", "measures")  # built: fine
