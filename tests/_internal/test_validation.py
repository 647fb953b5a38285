import math

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
