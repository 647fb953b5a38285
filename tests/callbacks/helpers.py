"""Small models and a recorder shared by the callback tests."""

import contextlib

import keras
import numpy as np
import pytest


@contextlib.contextmanager
def global_policy(name):
    """Keras' global dtype policy set to `name` (e.g. "mixed_float16") inside."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def tiny_model(optimizer=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    model.compile(optimizer or keras.optimizers.SGD(0.1), loss="mse")
    return model


def tiny_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([[0.5], [-1.0], [0.25], [2.0]])).astype("float32")
    return x, y


class RateRecorder(keras.callbacks.Callback):
    """Records (epoch, iterations, learning rate) before every batch.

    Put it after the callback under test: it sees the rate that the next
    update will use.
    """

    def __init__(self):
        super().__init__()
        self.rows = []
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.rows.append(
            (
                self.epoch,
                int(keras.ops.convert_to_numpy(optimizer.iterations)),
                float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            )
        )


def weights_of(model):
    sync = getattr(model, "jax_state_sync", None)  # JAX: mid-epoch state
    if sync is not None:
        sync()
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


class WeightRecorder(keras.callbacks.Callback):
    """Records the model's weights at train begin and after every batch.

    `trajectory[0]` holds the weights before the first update, and
    `trajectory[s]` those after `s` updates (with steps_per_execution=1).
    """

    def __init__(self):
        super().__init__()
        self.trajectory = []
        self.epoch_ends = []

    def on_train_begin(self, logs=None):
        if not self.trajectory:
            self.trajectory.append(weights_of(self.model))

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append(weights_of(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(weights_of(self.model))


# Keras' PyTorch trainer refuses steps_per_execution > 1.
needs_steps_per_execution = pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="the PyTorch backend requires steps_per_execution=1",
)


def slow_unless(fast, cells, ids=None):
    """`cells` as parameters; those not in `fast` are `slow`.

    The default test run keeps a few cells of a long matrix, each behaviour
    at least once; `.ci/run` runs the `slow` rest.
    """
    return [
        pytest.param(*(cell if isinstance(cell, tuple) else (cell,)),
                     marks=() if cell in fast else pytest.mark.slow,
                     id=None if ids is None else ids(cell))
        for cell in cells
    ]


class RateAtBatchEnd(keras.callbacks.Callback):
    """The rate each update used: in-step hooks set it before the update."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.rates.append(float(keras.ops.convert_to_numpy(rate)))


class Net(keras.Model):
    """A subclassed model: one `Dense(1)`, unbuilt until called."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


class Interrupt(keras.callbacks.Callback):
    """Raises at the start of epoch `at_epoch`, as a preemption would."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("simulated preemption")


class FunctionsRun(keras.callbacks.Callback):
    """Records the train function each execution runs (put it after the
    callbacks whose `on_train_batch_begin` picks it)."""

    def __init__(self):
        super().__init__()
        self.functions = []

    def on_train_batch_begin(self, batch, logs=None):
        self.functions.append(self.model.train_function)


def assert_close(actual, expected, path="result"):
    """Nested equality with 1e-6 tolerance on numbers and arrays."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, (np.ndarray, float)) and not isinstance(
        expected, bool
    ):
        np.testing.assert_allclose(
            actual, expected, rtol=0, atol=1e-6, err_msg=path
        )
    else:
        assert actual == expected, path
