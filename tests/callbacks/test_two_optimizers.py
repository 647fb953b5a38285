"""Callbacks that act on `model.optimizer` say so when it is not the one used.

A GAN compiled with `super().compile()` keeps `d_optimizer` and
`g_optimizer`; `StepDecay` acted silently on `model.optimizer`, which its
`train_step` never applies, and `UpdateRatioLogger.ratios` stayed `{}`
(issue 19). The decays and `SnapshotEnsemble` warn at train begin; the
callbacks that act inside the step on `model.optimizer`'s updates (EMA,
`UpdateRatioLogger`, SWA's `swa_learning_rate`) refuse a model whose own
`train_step` may apply other optimizers, before the first update.
"""

import inspect
import re
import warnings

import keras
import numpy as np
import pytest

import keras_trainopt
from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from keras_trainopt import StochasticWeightAveraging
from keras_trainopt import UpdateRatioLogger
from tests.callbacks.helpers import WeightRecorder
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


# -- a `train_step` of the model's own that applies two optimizers ------------

own_step = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the two-optimizer train_step is written for TensorFlow",
)


def _gan_like():
    from tests.compat import models

    return models.two_optimizers()


def _iterations(case):
    return [int(keras.ops.convert_to_numpy(o.iterations))
            for o in [case.model.optimizer, *case.optimizers]]


REFUSING = {
    "ExponentialMovingAverage": lambda: ExponentialMovingAverage(every=1),
    "UpdateRatioLogger": lambda: UpdateRatioLogger(every=1),
    "StochasticWeightAveraging": lambda: StochasticWeightAveraging(
        0, swa_learning_rate=0.01),
}


@own_step
@pytest.mark.parametrize("name", sorted(REFUSING))
def test_own_train_step_is_refused_before_the_first_update(name):
    case = _gan_like()
    x, y = case.x, case.y
    before = _iterations(case)
    with pytest.raises(ValueError) as info:
        case.model.fit(x, y, batch_size=16, epochs=1, verbose=0,
                       callbacks=[REFUSING[name]()])
    message = str(info.value)
    assert name in message
    assert "(body_optimizer, head_optimizer)" in message
    assert "RMSprop" in message  # the optimizer it would act on
    assert _iterations(case) == before  # no update ran
    # every `keras.x.y` and `keras_trainopt.X` the way out names exists
    for dotted in re.findall(r"\b((?:keras_trainopt|keras)(?:\.[A-Za-z_]\w*)+)",
                             message):
        value = {"keras": keras, "keras_trainopt": keras_trainopt}[
            dotted.split(".")[0]]
        for part in dotted.split(".")[1:]:
            value = getattr(value, part)


def test_the_ema_way_out_names_real_arguments():
    message = ""
    case = None
    if keras.backend.backend() == "tensorflow":
        case = _gan_like()
        with pytest.raises(ValueError) as info:
            case.model.fit(case.x, case.y, epochs=1, verbose=0,
                           callbacks=[ExponentialMovingAverage()])
        message = str(info.value)
        assert "use_ema=True" in message and "ema_momentum=0.999" in message
        assert "finalize_variable_values(" in message
    parameters = inspect.signature(keras.optimizers.SGD).parameters
    assert {"use_ema", "ema_momentum"} <= set(parameters)
    assert callable(keras.optimizers.SGD.finalize_variable_values)


@own_step
def test_the_ema_way_out_averages_both_optimizers():
    """`use_ema=True` in the optimizers the step applies: after
    `finalize_variable_values`, each part holds the NumPy EMA of the weights
    recorded after each update (Keras' EMA starts at the first update)."""
    from tests.compat import models

    case = models.two_optimizers()
    model = case.model
    head = keras.optimizers.SGD(models.LR0, momentum=0.9, use_ema=True,
                                ema_momentum=0.8)
    body = keras.optimizers.SGD(models.LR0 / 2, momentum=0.9, use_ema=True,
                                ema_momentum=0.8)
    model.compile(head, body)
    recorder = WeightRecorder()
    model.fit(case.x, case.y, batch_size=16, epochs=2, verbose=0,
              shuffle=False, callbacks=[recorder])
    head.finalize_variable_values(model.head.trainable_variables)
    body.finalize_variable_values(model.body.trainable_variables)
    index = {id(v): i for i, v in enumerate(model.weights)}
    for part in (model.head, model.body):
        for variable in part.trainable_variables:
            i = index[id(variable)]
            trajectory = [w[i].astype("float64") for w in recorder.trajectory[1:]]
            ema = trajectory[0]
            for w in trajectory[1:]:
                ema = 0.8 * ema + 0.2 * w
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variable), ema, rtol=1e-5,
                atol=1e-6, err_msg=variable.path)
