"""Callbacks that act on `model.optimizer` say so when it is not the one used.

A GAN compiled with `super().compile()` keeps `d_optimizer` and
`g_optimizer`; `StepDecay` acted silently on `model.optimizer`, which its
`train_step` never applies, and `UpdateRatioLogger.ratios` stayed `{}`
(issue 19).
"""

import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from keras_trainopt import UpdateRatioLogger
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


class TwoOptimizers(keras.Model):
    """The shape of Keras' GAN example: optimizers kept by `compile`."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer


def fit(model, callbacks, epochs=1):
    x, y = tiny_data(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                  verbose=0)
    return [str(w.message) for w in caught if w.category is UserWarning]


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: StepDecay(), "StepDecay"),
        (lambda: StepDecay(unit="step"), "StepDecay"),
        (lambda: UpdateRatioLogger(every=1), "UpdateRatioLogger"),
        (lambda: SnapshotEnsemble(2), "SnapshotEnsemble"),
    ],
)
def test_other_optimizers_are_named_at_train_begin(make, name):
    model = TwoOptimizers()
    model(np.ones((1, 4), "float32"))  # built, as after a GAN's first call
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3),
                  optimizer=keras.optimizers.SGD(0.1), loss="mse")
    said = fit(model, [make()])
    (warning,) = [w for w in said if "also holds" in w]
    assert name in warning
    assert "d_optimizer, g_optimizer" in warning


def test_one_optimizer_gives_no_warning():
    said = fit(tiny_model(), [StepDecay(), UpdateRatioLogger(every=1)])
    assert not [w for w in said if "optimizer" in w]


def test_an_optimizer_that_made_no_update_is_named_at_the_first_epoch_end():
    model = tiny_model(keras.optimizers.SGD(0.1))
    model.trainable = False  # model.optimizer applies nothing
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    said = fit(model, [StepDecay(every=1)], epochs=3)
    warned = [w for w in said if "made no update" in w]
    assert len(warned) == 1 and "StepDecay" in warned[0]
    # a model that trains gets no such warning
    assert not [w for w in fit(tiny_model(), [StepDecay()], epochs=2)
                if "made no update" in w]
    assert np.isfinite(float(model.optimizer.learning_rate))
