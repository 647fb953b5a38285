"""Which kind of code runs inside the train step, decided in one place.

Work done inside the compiled train step (a running average, an update
measurement) must be written three ways, because the backends differ in what
a step may do with a variable:

    FUNCTIONAL  JAX, and a `tf.distribute` replica: no variable may be
                written inside a conditional branch (JAX's step is a pure
                function; a mirrored variable synchronizes through
                `merge_call`), so branches return new values and the
                variables are assigned after them.
    IN_PLACE    PyTorch: the step runs eagerly, one kernel per op, so the
                fused in-place kernels of `_internal.torch_ops` pay off and
                a condition can be read on the host.
    STATEFUL    TensorFlow (no strategy, or cross-replica): a traced step
                whose branches assign variables (`ops.cond` with assigns),
                with the fused in-place kernels of `_internal.tf_ops`.

Callers ask `step_kind()` and keep their three paths side by side in the
algorithm's own module; nothing under `callbacks/` asks about the backend.
"""

import keras

from keras_trainopt._internal import distribute

FUNCTIONAL = "functional"
IN_PLACE = "in_place"
STATEFUL = "stateful"


def name():
    """The Keras backend's name: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def is_jax():
    """Whether Keras runs on JAX."""
    return name() == "jax"


def is_torch():
    """Whether Keras runs on PyTorch."""
    return name() == "torch"


def is_tensorflow():
    """Whether Keras runs on TensorFlow."""
    return name() == "tensorflow"


def step_kind():
    """How in-step code updates variables here: one of the constants above.

    Call it inside the step (or between steps for the same code run
    eagerly): a `tf.distribute` replica context is only seen from inside
    `strategy.run`.
    """
    if is_jax() or distribute.in_replica_context():
        return FUNCTIONAL
    if is_torch():
        return IN_PLACE
    return STATEFUL


def torch_ops():
    """The module of PyTorch's fused kernels, or `None` on other backends.

    Imported lazily: it imports `torch`, which the other backends need not
    have.
    """
    if not is_torch():
        return None
    from keras_trainopt._internal import torch_ops as module

    return module


def tf_ops():
    """The module of TensorFlow's fused kernels, or `None` on other backends.

    Imported lazily, as `torch_ops`: it imports `tensorflow`.
    """
    if not is_tensorflow():
        return None
    from keras_trainopt._internal import tf_ops as module

    return module


def jax_ops():
    """The module of JAX's jitted helpers, or `None` on other backends.

    Imported lazily, as `torch_ops`: it imports `jax`.
    """
    if not is_jax():
        return None
    from keras_trainopt._internal import jax_ops as module

    return module


def runs_step_eagerly(model):
    """Whether `model`'s train step runs eagerly, op by op, on the host.

    Keras' PyTorch trainer does unless the model is compiled with
    `jit_compile=True`; the traced steps (TensorFlow, JAX, a compiled
    PyTorch step) bake any host value into the trace, so their in-step work
    must read `iterations` in the step instead of a host count.
    """
    return is_torch() and not model.jit_compile
