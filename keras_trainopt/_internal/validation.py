"""Argument checks that fail early with a message naming the argument.

Every public constructor validates through these helpers, so the error text has
one shape everywhere: the rule, then the value received, e.g.
"`factor` must be in (0, 1). Received: factor=1.5".
"""

import math
import numbers


def _interval(low, high, low_open, high_open):
    if low is not None and high is not None:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        return f"in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


def check_real(
    name,
    value,
    *,
    low=None,
    high=None,
    low_open=False,
    high_open=False,
    allow_none=False,
):
    """Returns `value` as a finite float within the given bounds.

    Raises `TypeError` for non-numbers (bools included) and `ValueError` for
    NaN, infinities and values outside the bounds.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a number or None" if allow_none else "a number"
        raise TypeError(
            f"`{name}` must be {expected}. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"`{name}` must be a finite number. Received: {name}={value}"
        )
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (
        value >= high if high_open else value > high
    )
    if too_low or too_high:
        rule = _interval(low, high, low_open, high_open)
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value:g}")
    return value


def check_int(name, value, *, low=None, allow_none=False):
    """Returns `value` as an int >= `low`; rejects bools and floats."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = "an integer or None" if allow_none else "an integer"
        raise TypeError(
            f"`{name}` must be {expected}. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"`{name}` must be >= {low}. Received: {name}={value}")
    return value


def check_bool(name, value):
    """Returns `value` if it is a bool; 0/1 and other truthy things are refused."""
    if not isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be True or False. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    return value


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices` (strings)."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}"
        )
    return value
