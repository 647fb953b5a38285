"""TensorFlow-only fast paths for work done on every update, in one place.

Keras' TensorFlow ops run unfused on the CPU (no XLA by default): `a + c *
(w - a)` is three kernels, each writing a full-size temporary, and the
assign a fourth pass. Work that touches every weight at every update (a
running average) is bound by that memory traffic. TensorFlow's own
optimizer kernels do such updates in place in one pass; this module uses
them the way `_internal.torch_ops` uses `torch._foreach_*`. Callers reach it
only through `_internal.backend.tf_ops()`, which returns it on the
TensorFlow backend.
"""

import tensorflow as tf


def subtract_scaled_(variables, deltas, scale):
    """`variable -= scale * delta` for each pair, in place, one kernel each.

    `ResourceApplyGradientDescent` is plain SGD's kernel: exactly this
    update, as one fused pass that reads the variable and the delta and
    writes the variable. With `delta = average - weight` and `scale = c` it
    is the running-average rule `average + c * (weight - average)`
    (`averaging.formulas.average_update`).

    Args:
        variables: Keras variables (TensorFlow resource variables).
        deltas: tensors of the variables' shapes and dtypes.
        scale: a scalar, cast to each variable's dtype.
    """
    alphas = {}  # one cast per dtype, not per variable
    for variable, delta in zip(variables, deltas, strict=True):
        if delta.dtype not in alphas:
            alphas[delta.dtype] = tf.cast(scale, delta.dtype)
        tf.raw_ops.ResourceApplyGradientDescent(
            var=variable.handle, alpha=alphas[delta.dtype], delta=delta
        )
