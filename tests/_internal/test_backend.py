"""`_internal.backend`: the one place that sorts the backends."""

import keras
import pytest

from keras_trainopt._internal import backend
from tests.callbacks.helpers import tiny_model

BACKEND = keras.backend.backend()


def test_step_kind_of_this_backend():
    expected = {
        "tensorflow": backend.STATEFUL,
        "jax": backend.FUNCTIONAL,
        "torch": backend.IN_PLACE,
    }[BACKEND]
    assert backend.step_kind() == expected


def test_exactly_one_backend_predicate_holds():
    flags = [backend.is_tensorflow(), backend.is_jax(), backend.is_torch()]
    assert flags.count(True) == 1
    assert backend.name() == BACKEND


def test_torch_ops_only_on_torch():
    module = backend.torch_ops()
    if BACKEND == "torch":
        assert module.__name__ == "keras_trainopt._internal.torch_ops"
    else:
        assert module is None


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute only")
def test_a_tf_distribute_replica_is_functional():
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    kinds = []

    @tf.function
    def step():
        kinds.append(backend.step_kind())  # at trace time
        return tf.constant(0)

    strategy.run(step)
    assert kinds == [backend.FUNCTIONAL]
    with strategy.scope():  # cross-replica context: assigns in branches
        assert backend.step_kind() == backend.STATEFUL


@pytest.mark.parametrize("jit_compile", [False, True])
def test_only_an_uncompiled_torch_step_runs_eagerly(jit_compile):
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse",
                  jit_compile=jit_compile)
    assert backend.runs_step_eagerly(model) == (
        BACKEND == "torch" and not jit_compile
    )
