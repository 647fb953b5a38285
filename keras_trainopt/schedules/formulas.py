"""Learning-rate decay as pure functions of the time `t`.

Each function is written once against an array namespace `xp`: NumPy (the
default) gives exact float64 values for plotting and for callbacks, and
`keras.ops` gives the same curve as a tensor inside a compiled training step.
Nothing here validates its arguments; the public classes do that.

The decay shapes are multipliers of the initial rate (cs231n, "Neural Networks
Part 3", annealing the learning rate):

    step decay         factor ** floor(t / every)
    exponential decay  exp(-decay * t)
    1/t decay          1 / (1 + decay * t)

`warmup_then_decay` turns a shape into a learning rate with an optional linear
warm-up and a floor.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

# `t` and the results: a Python float, a NumPy array, or with `xp=keras.ops`
# a backend tensor. No static type covers all three, hence `Any`.
Value = Any


def staircase_time(t: Value, every: float, xp: types.ModuleType = np) -> Value:
    """`t` rounded down to a multiple of `every`: `every * floor(t / every)`."""
    return every * xp.floor(t / every)


def step_decay(
    t: Value, factor: float, every: float, xp: types.ModuleType = np
) -> Value:
    """Step decay multiplier `factor ** floor(t / every)`.

    PyTorch's `StepLR(step_size=every, gamma=factor)` follows the same curve.
    """
    return xp.power(factor, xp.floor(t / every))


def exponential_decay(t: Value, decay: float, xp: types.ModuleType = np) -> Value:
    """Exponential decay multiplier `exp(-decay * t)`.

    Keras' `ExponentialDecay(lr0, decay_steps, decay_rate)` is the same curve
    with `decay = -log(decay_rate) / decay_steps`.
    """
    return xp.exp(-decay * t)


def inverse_time_decay(
    t: Value, decay: float, xp: types.ModuleType = np
) -> Value:
    """1/t decay multiplier `1 / (1 + decay * t)`.

    Keras' `InverseTimeDecay(lr0, decay_steps, decay_rate)` is the same curve
    with `decay = decay_rate / decay_steps`.
    """
    return 1.0 / (1.0 + decay * t)


def warmup_then_decay(
    t: Value,
    initial_learning_rate: float,
    shape: Callable[[Value], Value],
    warmup: float = 0,
    min_learning_rate: float = 0.0,
    xp: types.ModuleType = np,
) -> Value:
    """The learning rate at time `t` (epochs or steps, counted from 0).

    During the first `warmup` units the rate rises linearly,
    `lr0 * (t + 1) / (warmup + 1)`, so it starts near 0 and reaches `lr0`
    exactly when the decay starts; after that it is `lr0 * shape(t - warmup)`.
    The result never falls below `min_learning_rate`.

    Args:
        t: time in units (a float, a NumPy array or a tensor).
        initial_learning_rate: `lr0`, the rate at the start of the decay.
        shape: a function of the decay time returning the multiplier, e.g.
            `lambda s: step_decay(s, 0.5, 10, xp=xp)`.
        warmup: number of warm-up units (a Python number, not a tensor).
        min_learning_rate: the floor.
        xp: `numpy` or `keras.ops`.
    """
    decay_time = xp.maximum(t - warmup, 0.0)
    value = initial_learning_rate * shape(decay_time)
    if warmup > 0:
        # the fraction first: lr0 * (t + 1) overflows float32 near its max
        ramp = initial_learning_rate * ((t + 1.0) / (warmup + 1.0))
        value = xp.where(t < warmup, ramp, value)
    return xp.maximum(value, min_learning_rate)


def cyclic_cosine(t: Value, period: float, xp: types.ModuleType = np) -> Value:
    """Cyclic cosine annealing multiplier (Huang et al. 2017, snapshot ensembles).

        (cos(pi * (t mod period) / period) + 1) / 2

    with `t` the 0-based step: 1 at the start of each cycle of `period`
    steps, falling along a half cosine to just above 0 at its last step, then
    back to 1 ("warm restart").
    """
    return 0.5 * (xp.cos(np.pi * xp.mod(t, period) / period) + 1.0)


def linear_cycle(
    t: Value, start: Value, period: Value, high: float, low: float
) -> Value:
    """SWA's cyclic rate (Izmailov et al. 2018, eq. 2), one cycle per period.

        s = ((t - start) mod period + 1) / period,  lr = (1 - s) * high + s * low

    For the `t`-th update (0-based) of cycles that begin at step `start`: the
    rate falls linearly from near `high` to exactly `low` at the last update
    of each cycle, where SWA takes its snapshot. Works with NumPy values and
    with tensors alike.
    """
    s = ((t - start) % period + 1.0) / period
    return (1.0 - s) * high + s * low
