"""Hooks of a `fit` that raised never run in a later plain `fit` (issue 19).

After a `KeyboardInterrupt` the in-step hooks stayed on the optimizer, and a
later `fit` with none of the library's callbacks kept decaying the rate (to
1e-18). Keras calls no `on_train_end` when `fit` raises; the next `fit`
drops the leftovers before it starts.
"""

import keras
import numpy as np
import pytest

from keras_trainopt import StepDecay
from keras_trainopt import UpdateRatioLogger
from tests.callbacks.helpers import RateAtBatchEnd
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


class InterruptAtBatch(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise KeyboardInterrupt


def fit(model, callbacks, epochs=1):
    x, y = tiny_data(32)
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False)


def test_plain_fit_after_an_interrupt_keeps_the_rate():
    model = tiny_model(keras.optimizers.SGD(0.1))
    decay = StepDecay(factor=0.5, every=1, unit="step")
    with pytest.raises(KeyboardInterrupt):
        fit(model, [decay, InterruptAtBatch(2)])
    held = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert held == pytest.approx(0.1 * 0.5**3)  # 3 updates were decayed
    rates = RateAtBatchEnd()
    fit(model, [rates], epochs=2)
    assert rates.rates == pytest.approx([held] * 8)
    assert "apply" not in vars(model.optimizer)
    assert not decay.hook_installed


def test_plain_fit_after_an_interrupt_trains_like_keras():
    # the weights after the plain fit equal those of a model that never had
    # our callback, started from the same weights and optimizer state
    model = tiny_model(keras.optimizers.SGD(0.1))
    with pytest.raises(KeyboardInterrupt):
        fit(model, [StepDecay(factor=0.5, every=1, unit="step"),
                    UpdateRatioLogger(), InterruptAtBatch(1)])
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    reference = tiny_model(keras.optimizers.SGD(rate))
    reference.set_weights(model.get_weights())
    fit(model, [])
    fit(reference, [])
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
