"""EMA and SWA in one `callbacks` list (issue 19, item 4), and a model whose
trainable weights change between fits.

The rule under test: each averager averages the trained weights (never the
other's average); where both would put their average in the model, the
later one in the list wins; `raw_weights()` of both is the trained weights,
and the next `fit` continues from them. References: a plain run with the
same seed (the in-step averages do not change training) and NumPy averages
of the weights it went through.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import StochasticWeightAveraging
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import weights_of

DECAY, EPOCHS, START = 0.8, 3, 1


def make_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="tanh"),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (np.sin(x) @ np.array([[1.0], [-0.5], [0.3]])).astype("float32")
    return x, y


def forward_mse(weights, x, y):
    k1, b1, k2, b2 = (np.asarray(w, "float64") for w in weights)
    pred = np.tanh(x @ k1 + b1) @ k2 + b2
    return float(np.mean(np.square(pred - y)))


class Recorder(keras.callbacks.Callback):
    """The weights at train begin, after every step and every epoch."""

    def on_train_begin(self, logs=None):
        self.begin = [np.array(w) for w in self.model.get_weights()]
        self.steps, self.epochs = [], []

    def _weights(self):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        return [np.array(w, "float64") for w in self.model.get_weights()]

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self._weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self._weights())


def fit(model, callbacks, epochs=EPOCHS, **kwargs):
    x, y = data()
    recorder = Recorder()
    history = model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False,
                        callbacks=[*callbacks, recorder], verbose=0, **kwargs)
    return recorder, history


@pytest.fixture(scope="module")
def plain():
    """The plain run, and NumPy EMA and SWA references over its weights."""
    recorder, _ = fit(make_model(), [])
    ema = [np.asarray(w, "float64") for w in recorder.begin]
    for step in recorder.steps:
        ema = [DECAY * a + (1 - DECAY) * w for a, w in zip(ema, step, strict=True)]
    swa = [np.mean(ws, axis=0) for ws in zip(*recorder.epochs[START:], strict=True)]
    return recorder, ema, swa


def assert_weights(actual, expected, rtol=1e-5, atol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a, "float64"), e, rtol=rtol,
                                   atol=atol)


def callbacks(order, **kwargs):
    ema = ExponentialMovingAverage(DECAY, warmup=False, every=1,
                                   **kwargs.get("ema", {}))
    swa = StochasticWeightAveraging(START, **kwargs.get("swa", {}))
    return ema, swa, ([ema, swa] if order == "ema_first" else [swa, ema])


@pytest.mark.parametrize("order", ["ema_first", "swa_first"])
def test_both_average_the_trained_weights_and_the_later_one_is_applied(
    plain, order
):
    reference, ema_ref, swa_ref = plain
    model = make_model()
    ema, swa, cbs = callbacks(order)
    recorder, history = fit(model, cbs)
    assert len(history.history["loss"]) == EPOCHS
    assert_weights(recorder.steps[-1], reference.steps[-1])  # same training
    # before: the SWA applied on top of the EMA, its raw weights the EMA's
    assert_weights(ema.raw_weights(), reference.steps[-1])
    assert_weights(swa.raw_weights(), reference.steps[-1])
    assert_weights(ema.averaged_weights(), ema_ref)
    assert_weights(swa.averaged_weights(), swa_ref)
    last = swa_ref if order == "ema_first" else ema_ref
    assert_weights(model.get_weights(), last)
    # the next fit continues from the trained weights, not from an average
    recorder, _ = fit(model, cbs, epochs=1)
    assert_weights(recorder.begin, reference.steps[-1])


def test_apply_at_end_false_leaves_the_other_average(plain):
    reference, _, swa_ref = plain
    model = make_model()
    ema, swa, cbs = callbacks("swa_first", ema={"apply_at_end": False})
    fit(model, cbs)
    assert_weights(model.get_weights(), swa_ref)
    assert_weights(ema.raw_weights(), reference.steps[-1])
    assert_weights(swa.raw_weights(), reference.steps[-1])


@pytest.mark.parametrize("swa_validates", [True, False])
def test_validate_with_average_with_both(plain, swa_validates):
    reference, _, _ = plain
    x, y = data()
    model = make_model()
    ema, swa, cbs = callbacks(
        "ema_first", ema={"validate_with_average": True},
        swa={"validate_with_average": swa_validates, "apply_at_end": False},
        )
    recorder, history = fit(model, cbs, validation_data=(x, y))
    # before: the swaps stacked, and training went on from the EMA average
    assert_weights(recorder.steps[-1], reference.steps[-1])
    assert_weights(ema.raw_weights(), reference.steps[-1])
    # the last epoch was validated with the later validating averager's
    # average, as it stood at the end of that epoch (the final one)
    validated = swa if swa_validates else ema
    expected = forward_mse(validated.averaged_weights(), x, y)
    np.testing.assert_allclose(history.history["val_loss"][-1], expected,
                               rtol=1e-4)
    # the model ends with the EMA average (SWA has apply_at_end=False)
    assert_weights(model.get_weights(),
                   [np.asarray(w, "float64") for w in ema.averaged_weights()])


def test_evaluate_with_both_uses_the_later_and_restores(plain):
    x, y = data()
    model = make_model()
    ema, swa, cbs = callbacks("ema_first")
    fit(model, cbs)
    held = [np.array(w) for w in model.get_weights()]
    loss = model.evaluate(x, y, callbacks=cbs, verbose=0)
    np.testing.assert_allclose(
        loss, forward_mse(swa.averaged_weights(), x, y), rtol=1e-4)
    assert_weights(model.get_weights(), [np.asarray(w, "float64") for w in held],
                   rtol=0, atol=0)


def _state_variables(optimizer, prefix):
    return [v for v in optimizer.variables if v.name.startswith(prefix)]


@pytest.mark.parametrize("cls", ["ema", "swa"])
def test_trainable_weights_changed_between_fits(cls):
    x, y = data()
    model = make_model()
    model.layers[0].trainable = False
    model.compile(keras.optimizers.SGD(0.05), loss="mse")

    def new():
        return (ExponentialMovingAverage(every=1) if cls == "ema"
                else StochasticWeightAveraging(0))

    averager = new()
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[averager], verbose=0)
    model.layers[0].trainable = True  # unfrozen: four trainable weights
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    with pytest.raises(ValueError, match="trainable weights changed"):
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[averager],
                  verbose=0)
    # refused before the first step, with nothing left on the optimizer
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert _state_variables(model.optimizer, cls) == []
    fresh = new()
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[fresh], verbose=0)
    assert fresh.num_averaged == (4 if cls == "ema" else 1)
    assert len(fresh.averaged_weights()) == 4
    assert _state_variables(model.optimizer, cls) == []


# -- with Keras' EarlyStopping(restore_best_weights=True) ----------------------


def early_stopping(restore=True):
    """Never stops; its best epoch is the one of the highest loss (the first)."""
    return keras.callbacks.EarlyStopping(
        "loss", mode="max", patience=100, restore_best_weights=restore)


@pytest.mark.parametrize("swa_last", [False, True])
def test_early_stopping_restoring_warns_and_the_later_one_wins(swa_last):
    model, recorder = make_model(), WeightRecorder()
    swa, stopper = StochasticWeightAveraging(start_epoch=0), early_stopping()
    callbacks = [recorder, stopper, swa] if swa_last else [recorder, swa, stopper]
    winner = "StochasticWeightAveraging" if swa_last else "EarlyStopping"
    with pytest.warns(UserWarning, match=(
            r"StochasticWeightAveraging\(apply_at_end=True\) and EarlyStopping"
            r"\(restore_best_weights=True\) both set the model's weights at "
            rf"train end; the later in `callbacks` wins: here {winner}")):
        history = model.fit(*data(), batch_size=8, epochs=EPOCHS, verbose=0,
                            shuffle=False, callbacks=callbacks)
    # references: the weights recorded at each epoch's end, and their mean
    best = recorder.epoch_ends[int(np.argmax(history.history["loss"]))]
    mean = [np.mean([e[i] for e in recorder.epoch_ends], axis=0)
            for i in range(len(best))]
    expected, other = (mean, best) if swa_last else (best, mean)
    assert not np.allclose(expected[0], other[0])  # the test tells them apart
    for a, b in zip(weights_of(model), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("validates", [False, True])
def test_ema_with_early_stopping_names_the_epoch_it_restores(validates):
    model = make_model()
    ema = ExponentialMovingAverage(DECAY, validate_with_average=validates)
    x, y = data()
    expected = (
        r"chosen by the validation of the average \(validate_with_average="
        r"True\), not on an average" if validates else
        r"its best epoch, not on an average")
    with pytest.warns(UserWarning, match=expected):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  validation_data=(x, y), callbacks=[ema, early_stopping()])


@pytest.mark.parametrize("case", ["apply_at_end=False", "no restore"])
def test_no_early_stopping_warning_when_one_of_them_leaves_the_weights(case):
    model = make_model()
    swa = StochasticWeightAveraging(
        start_epoch=0, apply_at_end=case != "apply_at_end=False")
    stopper = early_stopping(restore=case != "no restore")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(*data(), batch_size=8, epochs=2, verbose=0,
                  callbacks=[swa, stopper])
    assert not [w for w in caught if "EarlyStopping" in str(w.message)]


def ema_model():
    """make_model's network, its optimizer keeping an EMA of its own."""
    model = make_model()
    model.compile(keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.5),
                  loss="mse")
    return model


def test_the_optimizers_use_ema_warns_and_ours_is_applied(plain):
    model = ema_model()
    ema = ExponentialMovingAverage(DECAY, warmup=False, every=1)
    with pytest.warns(UserWarning, match=(
            r"ExponentialMovingAverage\(apply_at_end=True\) and the "
            r"optimizer's use_ema=True both put an average .* the model ends "
            r"on ExponentialMovingAverage's average")):
        recorder, _ = fit(model, [ema])
    # references: NumPy EMAs over the trained weights after every step,
    # ours (decay 0.8) and Keras' (0.5, its first step a copy)
    ours = [np.asarray(w, "float64") for w in recorder.begin]
    keras_ema = None
    for step in recorder.steps:
        ours = [DECAY * a + (1 - DECAY) * w for a, w in zip(ours, step, strict=True)]
        keras_ema = step if keras_ema is None else [
            0.5 * a + 0.5 * w for a, w in zip(keras_ema, step, strict=True)]
    assert not np.allclose(ours[0], keras_ema[0])  # the test tells them apart
    assert_weights(weights_of(model), ours)


@pytest.mark.parametrize("cls", ["ema", "swa"])
def test_no_use_ema_warning_when_the_average_is_not_applied(cls):
    model = ema_model()
    average = (ExponentialMovingAverage(DECAY, apply_at_end=False)
               if cls == "ema" else
               StochasticWeightAveraging(0, apply_at_end=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, [average], epochs=1)
    assert not [w for w in caught if "use_ema" in str(w.message)]


def test_swa_with_the_optimizers_use_ema_warns():
    model = ema_model()
    with pytest.warns(UserWarning, match=(
            r"StochasticWeightAveraging\(apply_at_end=True\) and the "
            r"optimizer's use_ema=True")):
        fit(model, [StochasticWeightAveraging(0)], epochs=1)
