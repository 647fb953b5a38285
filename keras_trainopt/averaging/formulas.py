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


# The default stride keeps the strided average within about 0.4% of the
# per-step average's own lag (see `default_every`).
STEPS_PER_STRIDE = 125
MAX_DEFAULT_EVERY = 8


def default_every(decay):
    """The stride `ExponentialMovingAverage` takes when `every` is not given.

    The EMA remembers about `tau = 1 / (1 - decay)` updates. Averaging only
    every k-th update (with the decay compounded, `ema_decay`) keeps that time
    constant, and for any trajectory the strided average `ema_k` stays close
    to the per-step one `ema_1`, element by element:

        |ema_k - ema_1| <= C * max_t |w_(t+1) - w_t|,   C ~ (k - 1) / 2

    (in the steady state; `C = sum_i |A_i - B_i|` over the two averages' tail
    masses `A_i`, `B_i` beyond age i, e.g. C = 3.55 for decay 0.99 and k = 8,
    3.5 in the limit). The per-step average itself lags the weights by
    `tau - 1` updates of their movement, so the stride adds at most
    `(k - 1) / (2 (tau - 1))` to that lag. The rule

        k = min(8, max(1, floor(tau / 125)))

    keeps this under 0.4%: k = 1 (exact) for tau < 250 (decay < 0.996), 2
    from 250, 4 from 500 and 8 from 1000 updates (decay >= 0.999), where the
    update costs an eighth of a per-step one.

    Examples:
        >>> from keras_trainopt.averaging.formulas import default_every
        >>> [default_every(d) for d in (0.9, 0.996, 0.998, 0.999, 0.9999)]
        [1, 2, 4, 8, 8]
    """
    tau = 1.0 / (1.0 - decay)
    # 1 / (1 - 0.999) is 999.9999999999999 in floating point
    stride = int(tau / STEPS_PER_STRIDE + 1e-9)
    return min(MAX_DEFAULT_EVERY, max(1, stride))


def equal_average_coefficient(num_averaged):
    """`c = 1 / (n + 1)`: the weight of a new term in the mean of `n + 1`."""
    return 1.0 / (num_averaged + 1.0)


def average_update(average, weight, coefficient):
    """`average + coefficient * (weight - average)`, one step of either mean.

    The one definition of the rule: every in-step path of
    `averaging.in_step` calls it, except PyTorch's and TensorFlow's, which
    run the same rule as one fused kernel (`torch._foreach_lerp_`,
    `_internal.torch_ops.lerp_`; plain SGD's kernel `a -= c (a - w)`,
    `_internal.tf_ops.subtract_scaled_`).
    """
    return average + coefficient * (weight - average)


def all_finite(tensors, xp=np):
    """Whether every element of `tensors` is finite, by one sum over them.

    NaN and inf propagate through the sum, which is finite exactly when every
    element is, barring float32 overflow beyond ~1e32 (diverged too). An
    update whose weights are not all finite is left out of the average.
    """
    return xp.isfinite(xp.sum(xp.stack([xp.sum(t) for t in tensors])))
