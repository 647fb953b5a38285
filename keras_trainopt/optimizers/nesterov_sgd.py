"""`nesterov_sgd`: SGD with Nesterov momentum, configured in one call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import keras

from keras_trainopt._internal import validation

# The SGD arguments a caller may pass through; the helper sets the rest.
_PASS_THROUGH = tuple(
    name
    for name, parameter in inspect.signature(
        keras.optimizers.SGD.__init__
    ).parameters.items()
    if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    and name not in ("self", "learning_rate", "momentum", "nesterov")
)


def nesterov_sgd(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.01,
    momentum: float = 0.9,
    **kwargs: Any,
) -> keras.optimizers.SGD:
    """Returns `keras.optimizers.SGD(nesterov=True)` with checked arguments.

    Nesterov momentum evaluates the gradient at the "looked-ahead" point the
    momentum is about to carry the weights to, rather than at the current
    weights, so the velocity corrects itself before it overshoots. It
    converges a little better than classic momentum on convex problems, and in
    practice it is the usual choice for SGD (cs231n). Typical values:
    `momentum=0.9` (0.5 at first, annealed to 0.99, is sometimes used), a
    learning rate around 0.01-0.1 for networks with BatchNorm, found best with
    `find_learning_rate`, and a decay schedule.

    The update (cs231n form; Keras computes the same algebra as
    `v = mu * v - lr * g; w += mu * v - lr * g`):

        v_prev = v
        v = mu * v - lr * grad(w)
        w += -mu * v_prev + (1 + mu) * v

    Examples:
        >>> from keras_trainopt import StepDecay, nesterov_sgd
        >>> optimizer = nesterov_sgd(0.05, momentum=0.9, weight_decay=1e-4)
        >>> optimizer.nesterov, float(optimizer.momentum)
        (True, 0.9)
        >>> decay = StepDecay(0.05, factor=0.5, every=10)
        >>> optimizer = nesterov_sgd(decay.to_schedule(steps_per_epoch=100))

    Args:
        learning_rate: a float > 0, or a
            `keras.optimizers.schedules.LearningRateSchedule`, such as the
            `to_schedule()` of a decay callback.
        momentum: the momentum `mu`, in (0, 1).
        **kwargs: other `keras.optimizers.SGD` arguments (`weight_decay`,
            `clipnorm`, `use_ema`, `name`, ...); unknown names are refused.

    Returns:
        A `keras.optimizers.SGD` with `nesterov=True`.

    Reference: Sutskever et al., "On the importance of initialization and
    momentum in deep learning" (ICML 2013); cs231n, "Neural Networks Part 3",
    parameter updates.
    """
    learning_rate = _check_learning_rate(learning_rate)
    momentum = validation.check_real(
        "momentum", momentum, low=0.0, high=1.0, low_open=True, high_open=True
    )
    _check_names(kwargs)
    kwargs = {
        name: _CHECKS[name](name, value) if name in _CHECKS else value
        for name, value in kwargs.items()
    }
    return keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=momentum, nesterov=True, **kwargs
    )


def _check_names(kwargs: dict[str, Any]) -> None:
    """Refuses `nesterov` and unknown names, saying why (Keras does not)."""
    if "nesterov" in kwargs:
        raise TypeError(
            "`nesterov` cannot be passed: nesterov_sgd always sets "
            "nesterov=True; use keras.optimizers.SGD for classic momentum. "
            f"Received: nesterov={kwargs['nesterov']!r}"
        )
    unknown = sorted(set(kwargs) - set(_PASS_THROUGH))
    if unknown:
        raise TypeError(
            "nesterov_sgd got unexpected argument(s) "
            f"{', '.join(f'`{name}`' for name in unknown)}. "
            f"It accepts learning_rate, momentum and the SGD arguments "
            f"{', '.join(_PASS_THROUGH)}."
        )


def _check_learning_rate(
    learning_rate: object,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A schedule as it is, or a float > 0 (Keras takes 0, NaN, -1)."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    if isinstance(learning_rate, keras.callbacks.Callback) and hasattr(
        learning_rate, "to_schedule"
    ):
        raise TypeError(
            "`learning_rate` must be a float or a LearningRateSchedule, not "
            f"the callback {type(learning_rate).__name__}. Pass the callback "
            "to `fit(callbacks=[...])`, or its "
            "`.to_schedule(steps_per_epoch=...)` here."
        )
    return validation.check_real(
        "learning_rate", learning_rate, low=0.0, low_open=True
    )


def _name(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"`{name}` must be a string or None. Received: {name}={value!r}"
        )
    return value


_real = validation.check_real
_positive_or_none = functools.partial(
    _real, low=0.0, low_open=True, allow_none=True
)

# What Keras' SGD lacks or words badly: it takes `clipnorm=-1`, and "x"
# fails in the train step (tests/optimizers/test_nesterov_sgd.py lists each
# case). Its one clear check (one kind of clipping) is left to it.
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "weight_decay": functools.partial(_real, low=0.0, allow_none=True),
    "clipnorm": _positive_or_none,
    "clipvalue": _positive_or_none,
    "global_clipnorm": _positive_or_none,
    "use_ema": validation.check_bool,
    "ema_momentum": functools.partial(_real, low=0.0, high=1.0),
    "ema_overwrite_frequency": functools.partial(
        validation.check_int, low=1, allow_none=True
    ),
    "loss_scale_factor": _positive_or_none,
    "gradient_accumulation_steps": functools.partial(
        validation.check_int, low=2, allow_none=True
    ),
    "name": _name,
}
