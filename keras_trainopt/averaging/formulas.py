"""Running averages of the weights as pure functions.

Both averages are one update rule, `average += c * (weight - average)`, with a
different coefficient `c`:

    exponential moving average  c = 1 - d, the decay d close to 1
    equal (SWA) average         c = 1 / (n + 1), n weights averaged so far

Written against an array namespace `xp` like `keras_trainopt.schedules.formulas`:
NumPy for exact reference values, `keras.ops` inside the compiled train step.
Nothing here validates its arguments; the public classes do that.
"""

import numpy as np


def ema_decay(num_updates, decay, warmup=True, every=1, xp=np):
    """The decay of the EMA update that follows `num_updates` updates.

    With `warmup` the per-step decay ramps up as in TensorFlow's
    `tf.train.ExponentialMovingAverage(num_updates=...)`,
    `min(decay, (1 + s) / (10 + s))` after `s` steps (0.1 at the start, 0.55
    after 10 steps, 0.918 after 100), so the early average is not dominated by
    the random initial weights. One update every `every` steps stands for
    `every` per-step updates, so its decay is the per-step decay at
    `s = every * num_updates`, raised to the power `every`:

        d_n = min(decay, (1 + k n) / (10 + k n)) ** k,   k = every

    which is TensorFlow's rule for `every=1` and keeps the same time constant,
    about `1 / (1 - decay)` steps, for any `every`.
    """
    if not warmup:
        return decay**every + 0.0 * num_updates
    steps = every * num_updates
    return xp.power(xp.minimum(decay, (1.0 + steps) / (10.0 + steps)), every)


def equal_average_coefficient(num_averaged):
    """`c = 1 / (n + 1)`: the weight of a new term in the mean of `n + 1`."""
    return 1.0 / (num_averaged + 1.0)


def average_update(average, weight, coefficient):
    """`average + coefficient * (weight - average)`, one step of either mean.

    The one definition of the rule: every in-step path of
    `averaging.in_step` calls it, except PyTorch's, which runs the same rule
    as one fused kernel (`torch._foreach_lerp_`, `_internal.torch_ops.lerp_`).
    """
    return average + coefficient * (weight - average)


def all_finite(tensors, xp=np):
    """Whether every element of `tensors` is finite, by one sum over them.

    NaN and inf propagate through the sum, which is finite exactly when every
    element is, barring float32 overflow beyond ~1e32 (diverged too). An
    update whose weights are not all finite is left out of the average.
    """
    return xp.isfinite(xp.sum(xp.stack([xp.sum(t) for t in tensors])))
