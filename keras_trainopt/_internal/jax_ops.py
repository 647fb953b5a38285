"""JAX-only fast paths for work done between steps, in one place.

Between two train steps a callback that copies a few device arrays pays
JAX's dispatch of an op-by-op call for each: about 0.1 ms per
`jnp.copy`, behind Keras' `ops.copy`, 0.3 ms for three. One jitted call
copies them all for about 30 microseconds. Callers reach this module only
through `_internal.backend.jax_ops()`, which returns it on the JAX backend.
"""

import jax


@jax.jit
def _copies(arrays):
    return [array.copy() for array in arrays]


def copies(arrays):
    """Fresh copies of `arrays` (JAX arrays), dispatched as one call.

    Asynchronous like any JAX call: the copies are made once the arrays
    are computed, and the caller does not wait for them.
    """
    return _copies(list(arrays))
