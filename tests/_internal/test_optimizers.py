import warnings

import keras

from keras_trainopt._internal import optimizers


def test_scratch_state_is_attached_but_not_backed_up():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    optimizers.build_optimizer(model)
    own = list(model.optimizer.variables)
    kept = optimizers.add_state_variable(model, name="kept")
    scratch = optimizers.add_state_variable(
        model, shape=(4,), dtype="float32", name="scratch", backed_up=False
    )
    optimizers.attach_state_variables(model.optimizer, [kept, scratch])
    ids = [id(v) for v in model.optimizer.variables]
    assert ids == [id(v) for v in own] + [id(kept), id(scratch)]
    assert [id(v) for v in optimizers.backed_up_variables(model.optimizer)] == (
        [id(v) for v in own] + [id(kept)]
    )
    optimizers.detach_state_variables(model.optimizer, [kept, scratch])
    assert [id(v) for v in model.optimizer.variables] == [id(v) for v in own]


def test_state_counters_take_the_backends_int_without_a_warning():
    # Keras' "int", as the optimizer's own step count: int64 on TensorFlow
    # and PyTorch; on JAX an int64 variable is truncated to int32 with a
    # UserWarning at every creation (every averaging callback made two)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        counter = optimizers.add_state_variable(model, name="counter")
    assert counter.dtype == model.optimizer.iterations.dtype
