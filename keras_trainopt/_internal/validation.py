"""Argument checks that fail early with a message naming the argument.

Every public constructor validates through these helpers, so the error text has
one shape everywhere: the rule, then the value received, e.g.
"`factor` must be in (0, 1). Received: factor=1.5".
"""

import collections.abc
import math
import numbers
import os
import reprlib

import numpy as np

from keras_trainopt._internal import optimizers

# The largest float32: learning rates above it are infinite inside the step.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32


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
    finite=True,
):
    """Returns `value` as a finite float within the given bounds.

    Raises `TypeError` for non-numbers (bools included) and `ValueError` for
    NaN, infinities (unless `finite=False`) and values outside the bounds.
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
    if finite and not math.isfinite(value):
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


def check_int(name, value, *, low=None, high=None, allow_none=False):
    """Returns `value` as an int in [`low`, `high`]; rejects bools and floats."""
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
    if high is not None and value > high:
        raise ValueError(f"`{name}` must be <= {high}. Received: {name}={value}")
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


def check_float32(name, value):
    """Returns `value` if a float32 holds it: rates and decay constants
    beyond the largest float32 are inf inside the train step (and
    `decay * 0` NaN), and nonzero ones below the smallest normal float32
    are flushed to 0 there."""
    if value is not None and value > FLOAT32_MAX:
        raise ValueError(
            f"`{name}` must be at most {FLOAT32_MAX:g}, the largest float32: "
            f"it is computed in float32 in the train step. "
            f"Received: {name}={value:g}"
        )
    if value is not None and 0 < abs(value) < FLOAT32_TINY:
        raise ValueError(
            f"`{name}` must be 0 or at least {FLOAT32_TINY:g}, the smallest "
            "normal float32: smaller values are 0 in the train step. "
            f"Received: {name}={value:g}"
        )
    return value


def check_path(name, value, *, allow_none=False, folder=True):
    """Returns `value` as a non-empty `str` path.

    Refuses bytes and non-paths (`TypeError`), the empty path, and with
    `folder=True` an existing file, or with `folder=False` an existing
    folder (`ValueError`): each would fail later, when something is written.
    """
    if value is None and allow_none:
        return None
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        expected = "a path (str or os.PathLike)" + (" or None" if allow_none else "")
        raise TypeError(
            f"`{name}` must be {expected}. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    if not path or "\x00" in path:
        raise ValueError(
            f"`{name}` must be a non-empty path without NUL characters. "
            f"Received: {name}={value!r}"
        )
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"`{name}` must be a folder, not an existing file. "
            f"Received: {name}={path!r}"
        )
    if not folder and os.path.isdir(path):
        raise ValueError(
            f"`{name}` must be a file path, not an existing folder. "
            f"Received: {name}={path!r}"
        )
    return path


def _is_extension_float(dtype):
    """Whether `dtype` is a float type of `ml_dtypes` (e.g. bfloat16).

    NumPy lists them as kind "V"; `ml_dtypes` (a dependency of Keras) knows
    their ranges.
    """
    if dtype.kind != "V":
        return False
    import ml_dtypes

    try:
        ml_dtypes.finfo(dtype)
    except ValueError:  # an integer type of ml_dtypes (int4), or a struct
        return False
    return True


def check_floats(name, value, *, ndim=None, float64=True):
    """Returns `value` as a NumPy array of numbers (NaN and inf allowed).

    Refuses strings, `None`, complex numbers and anything NumPy cannot read
    as real numbers (`TypeError`), and arrays of another rank than `ndim`
    (`ValueError`). The array is float64, or with `float64=False` keeps a
    real dtype it already has (a float16 activation stays float16); the
    floats NumPy has only through `ml_dtypes` (bfloat16, as layers output
    under the `mixed_bfloat16` policy, and the float8 types) become float32,
    which holds each of their values exactly.
    """
    array = None
    if not isinstance(value, (str, bytes)) and value is not None:
        try:
            array = np.asarray(value)
            if array.dtype.kind == "O":  # Python objects, e.g. [1, 2.5]
                if any(item is None for item in array.flat):
                    raise TypeError  # NumPy would read None as NaN
                array = array.astype("float64")
            elif _is_extension_float(array.dtype):
                array = array.astype("float64" if float64 else "float32")
            elif array.dtype.kind not in "biuf":
                array = None
            elif float64:
                array = array.astype("float64", copy=False)
        except (TypeError, ValueError):
            array = None
    if array is None:
        raise TypeError(
            f"`{name}` must be an array or a sequence of real numbers. "
            f"Received: {name}={reprlib.repr(value)} (of type "
            f"{type(value).__name__})"
        )
    if ndim is not None and array.ndim != ndim:
        raise ValueError(
            f"`{name}` must be {ndim}-D. Received: {name} of shape "
            f"{array.shape}"
        )
    return array


def check_mapping(name, value, *, allow_none=False):
    """Returns `value` if it is a mapping (a dict), or `None` if allowed."""
    if value is None and allow_none:
        return None
    if not isinstance(value, collections.abc.Mapping):
        expected = "a dict" + (" or None" if allow_none else "")
        raise TypeError(
            f"`{name}` must be {expected}. Received: {name}="
            f"{reprlib.repr(value)} (of type {type(value).__name__})"
        )
    return value


def check_inputs(name, value, *, allow_none=False):
    """Returns `value` if it can be a batch of model inputs.

    That is an array with a batch axis (NumPy, or any array-like with a
    `shape`), or a non-empty list, tuple or dict of them for several inputs.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, dict):
        parts = list(value.values())
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    if not parts or not all(
        hasattr(part, "__array__") and len(getattr(part, "shape", ())) >= 1
        for part in parts
    ):
        raise TypeError(
            f"`{name}` must be a batch of inputs: an array, or a list or dict "
            f"of arrays. Received: {name}={reprlib.repr(value)} (of type "
            f"{type(value).__name__})"
        )
    return value


def check_built(model, caller, needs):
    """Raises `ValueError` if `model` is not built, naming the way out.

    A subclassed model that was never called has no weights when the
    callbacks start: Keras' TensorFlow trainer builds it at the first step.

    Args:
        model: the model the callback starts with.
        caller: the callback's class name, for the message.
        needs: what the callback does with the weights ("averages the
            model's weights").
    """
    if not model.built:
        raise ValueError(
            f"{caller} {needs}, which do not exist yet: the model is not "
            "built (a subclassed model builds at its first step, after the "
            "callbacks start). Build it before `fit`, e.g. `model(x[:1])` "
            "or `model.build(input_shape)`."
        )


def optimizers_of_own_step(model):
    """The other optimizers a model's own `train_step` may apply.

    Names of the model's attributes that hold a `keras.optimizers.Optimizer`
    other than `model.optimizer`, when the model's class defines its own
    `train_step` (a GAN compiled with `super().compile()` that keeps
    `d_optimizer` and `g_optimizer`); empty otherwise: Keras' own
    `train_step` applies `model.optimizer`.
    """
    for cls in type(model).__mro__:
        if "train_step" in vars(cls):
            if cls.__module__.split(".")[0] == "keras":
                return []
            break
    return optimizers.other_optimizers(model)


def check_one_optimizer(model, caller, acts, consequence, way_out):
    """Raises `ValueError` if `model`'s own `train_step` may apply optimizers
    that `caller` does not see (`optimizers_of_own_step`).

    A callback that acts on the updates of `model.optimizer` from inside the
    step (an average after each update, a measurement of one update) sees
    nothing of the updates the other optimizers make, and nothing at all
    when `model.optimizer` is a stand-in the step never applies.

    Args:
        model: the model the callback starts with.
        caller: the callback's class name, for the message.
        acts: what it does with `model.optimizer` ("averages the weights
            after each update of").
        consequence: what comes of it ("nothing is averaged").
        way_out: what to do instead, naming only what exists.
    """
    names = optimizers_of_own_step(model)
    if not names:
        return
    main = type(optimizers.unwrap(model.optimizer)).__name__
    raise ValueError(
        f"{caller} {acts} `model.optimizer` ({main}) only, but "
        f"{type(model).__name__} has a `train_step` of its own and holds "
        f"other optimizers as well ({', '.join(names)}), which {caller} "
        "does not see; if `train_step` never applies `model.optimizer` (a "
        f"GAN compiled with `super().compile()`), {consequence}. {way_out}"
    )
