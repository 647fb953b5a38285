import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import ExponentialMovingAverage
from tests.callbacks.helpers import Interrupt
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import needs_steps_per_execution
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model
from tests.callbacks.helpers import weights_of


def numpy_ema(trajectory, decay, warmup=True, every=1, skip=()):
    """The reference: an EMA over recorded weights, written out in NumPy.

    `trajectory[s]` are the weights after `s` updates; the average starts
    from `trajectory[0]` and takes every `every`-th later point, leaving out
    the steps in `skip`. The warm-up is TensorFlow's per-step rule,
    min(decay, (1 + s) / (10 + s)), compounded over `every` steps.
    """
    average = [w.astype("float64") for w in trajectory[0]]
    n = 0
    for step in range(every, len(trajectory), every):
        if step in skip:
            continue
        if warmup:
            s = n * every
            d = min(decay, (1 + s) / (10 + s)) ** every
        else:
            d = decay**every
        average = [d * a + (1 - d) * w for a, w in zip(average, trajectory[step],
                                                       strict=True)]
        n += 1
    return average, n


def fit(model, callbacks, epochs=3, **kwargs):
    x, y = tiny_data(48)
    kwargs.setdefault("batch_size", 8)
    return model.fit(x, y, epochs=epochs, callbacks=callbacks, verbose=0,
                     shuffle=False, **kwargs)


def assert_close(actual, expected, atol=2e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=atol)


def assert_identical(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize(
    "decay, warmup, every",
    [(0.9, True, 1), (0.9, False, 1), (0.95, True, 4), (0.999, True, 1)],
)
def test_equals_numpy_ema_of_the_recorded_trajectory(decay, warmup, every):
    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(decay, warmup=warmup, every=every,
                                   apply_at_end=False)
    fit(model, [recorder, ema])
    expected, n = numpy_ema(recorder.trajectory, decay, warmup, every)
    assert ema.num_averaged == n and ema.num_skipped == 0
    assert_close(ema.averaged_weights(), expected)


@pytest.mark.parametrize("every", [1, 4])
def test_without_the_finiteness_check_the_average_is_the_same(every):
    # skip_non_finite=False only drops the check: a finite run averages to
    # the same EMA, and the config says so
    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(0.9, every=every, apply_at_end=False,
                                   skip_non_finite=False)
    fit(model, [recorder, ema])
    expected, n = numpy_ema(recorder.trajectory, 0.9, True, every)
    assert ema.num_averaged == n and ema.num_skipped == 0
    assert_close(ema.averaged_weights(), expected)
    assert ema.get_config()["skip_non_finite"] is False


def test_warmup_decay_matches_tensorflow_values():
    ema = ExponentialMovingAverage(0.999, every=1)
    # tf.train.ExponentialMovingAverage: min(decay, (1 + n) / (10 + n))
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(10) == pytest.approx(0.55)
    assert ema.decay_at(100) == pytest.approx(101 / 110)
    assert ema.decay_at(10**6) == pytest.approx(0.999)
    assert ExponentialMovingAverage(0.99, warmup=False, every=5).decay_at(
        0
    ) == pytest.approx(0.99**5)


@needs_steps_per_execution
@pytest.mark.parametrize("every, averaged", [(1, 18), (3, 6)])
def test_exact_with_steps_per_execution(every, averaged):
    """The update runs inside the step: 4 updates per execution, same EMA."""
    reference = tiny_model()
    ema_reference = ExponentialMovingAverage(0.9, every=every,
                                             apply_at_end=False)
    fit(reference, [ema_reference])
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss="mse", steps_per_execution=4)
    ema = ExponentialMovingAverage(0.9, every=every, apply_at_end=False)
    fit(model, [ema])
    assert ema.num_averaged == ema_reference.num_averaged == averaged
    assert_close(ema.averaged_weights(), ema_reference.averaged_weights())


# The default stride from the time constant tau = 1 / (1 - decay), written
# out by hand: 1 below 250 updates, then 2, 4 and 8 from 1000 on.
@pytest.mark.parametrize("decay, every", [
    (0.5, 1), (0.9, 1), (0.99, 1), (0.995, 1), (0.996, 2), (0.997, 2),
    (0.998, 4), (0.9985, 5), (0.999, 8), (0.9999, 8), (0.999999, 8),
])
def test_default_stride_follows_the_time_constant(decay, every):
    ema = ExponentialMovingAverage(decay)
    assert ema.every == every
    assert ema.get_config()["every"] == every


@pytest.mark.parametrize("kwargs, decay, every, averaged", [
    # a short time constant: the default is the exact per-step EMA
    ({"decay": 0.9}, 0.9, 1, 18),
    # the default decay (0.999): every eighth update
    ({}, 0.999, 8, 18 // 8),
    # an explicit stride is kept whatever the decay
    ({"decay": 0.99, "every": 8}, 0.99, 8, 18 // 8),
])
def test_the_stride_in_use_gives_the_numpy_ema_of_that_stride(
    kwargs, decay, every, averaged
):
    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(**kwargs, apply_at_end=False)
    fit(model, [recorder, ema])
    assert ema.decay == decay and ema.every == every
    assert ema.num_averaged == averaged
    expected, _ = numpy_ema(recorder.trajectory, decay, every=every)
    assert_close(ema.averaged_weights(), expected)


def test_model_holds_the_average_at_end_and_raw_weights_stay_available():
    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(0.9, every=1)
    fit(model, [recorder, ema])
    expected, _ = numpy_ema(recorder.trajectory, 0.9)
    assert_close(weights_of(model), expected)
    assert_identical(ema.raw_weights(), recorder.trajectory[-1])
    assert_identical(ema.averaged_weights(), weights_of(model))


def test_apply_at_end_false_leaves_the_trained_weights():
    model = tiny_model()
    recorder = WeightRecorder()
    fit(model, [recorder, ExponentialMovingAverage(0.9, apply_at_end=False)])
    assert_identical(weights_of(model), recorder.trajectory[-1])


def test_a_second_fit_continues_from_the_raw_weights_and_the_average():
    """Two fits with one callback equal one long fit (average and weights)."""
    whole = tiny_model()
    ema_whole = ExponentialMovingAverage(0.9)
    fit(whole, [ema_whole], epochs=4)

    split = tiny_model()
    ema_split = ExponentialMovingAverage(0.9)
    fit(split, [ema_split], epochs=2)
    fit(split, [ema_split], epochs=4, initial_epoch=2)
    assert_close(ema_split.raw_weights(), ema_whole.raw_weights(), atol=1e-6)
    assert_close(ema_split.averaged_weights(), ema_whole.averaged_weights(),
                 atol=1e-6)
    assert ema_split.num_averaged == ema_whole.num_averaged


def test_validation_uses_the_average_and_swaps_back_bit_for_bit():
    x, y = tiny_data(48)
    xv, yv = tiny_data(16, seed=1)
    plain = tiny_model()
    plain_recorder = WeightRecorder()
    plain.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
              callbacks=[plain_recorder])

    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(0.9, validate_with_average=True,
                                   apply_at_end=False)
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False,
                        verbose=0, validation_data=(xv, yv),
                        callbacks=[ema, recorder])
    # validation changed nothing in training: the same weights, bit for bit
    for ours, theirs in zip(recorder.epoch_ends, plain_recorder.epoch_ends,
                            strict=True):
        assert_identical(ours, theirs)
    # and the last val_loss is the loss of the averaged weights
    check = tiny_model()
    check.set_weights(ema.averaged_weights())
    expected = check.evaluate(xv, yv, batch_size=8, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)


def test_validation_uses_the_raw_weights_unless_asked():
    x, y = tiny_data(48)
    xv, yv = tiny_data(16, seed=1)
    model = tiny_model()
    ema = ExponentialMovingAverage(0.9, apply_at_end=False)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                        validation_data=(xv, yv), callbacks=[ema])
    expected = model.evaluate(xv, yv, batch_size=8, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method", ["evaluate", "predict"])
def test_evaluate_and_predict_with_the_callback_use_the_average(method):
    x, y = tiny_data(48)
    model = tiny_model()
    ema = ExponentialMovingAverage(0.9, apply_at_end=False)
    fit(model, [ema])
    raw = weights_of(model)
    check = tiny_model()
    check.set_weights(ema.averaged_weights())
    if method == "evaluate":
        got = model.evaluate(x, y, verbose=0, callbacks=[ema])
        want = check.evaluate(x, y, verbose=0)
    else:
        got = model.predict(x, verbose=0, callbacks=[ema])
        want = check.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert_identical(weights_of(model), raw)  # swapped back exactly
    plain = tiny_model()
    fit(plain, [])
    assert len(model.optimizer.variables) == len(plain.optimizer.variables)


def test_a_nan_in_one_step_is_skipped_and_counted():
    class PoisonOneStep(keras.callbacks.Callback):
        """Makes step 5 produce NaN weights, then puts the clean ones back."""

        def __init__(self):
            super().__init__()
            self.step = 0

        def on_train_batch_begin(self, batch, logs=None):
            if self.step == 5:
                self.saved = weights_of(self.model)
                kernel = self.model.layers[0].kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

        def on_train_batch_end(self, batch, logs=None):
            if self.step == 5:
                assert np.isnan(weights_of(self.model)[0]).all()
                self.model.set_weights(self.saved)
            self.step += 1

    model = tiny_model()
    recorder = WeightRecorder()
    ema = ExponentialMovingAverage(0.9, every=1, apply_at_end=False)
    fit(model, [PoisonOneStep(), ema, recorder])
    assert ema.num_skipped == 1
    averaged = ema.averaged_weights()
    assert all(np.isfinite(a).all() for a in averaged)
    # the 6th update (trajectory index 6) made the NaN weights: the average
    # must be the EMA of all the other points
    expected, n = numpy_ema(recorder.trajectory, 0.9, skip={6})
    assert ema.num_averaged == n
    assert_close(averaged, expected)


def test_non_trainable_weights_are_copied_not_averaged():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5),
        keras.layers.BatchNormalization(), keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    ema = ExponentialMovingAverage(0.9, apply_at_end=False)
    fit(model, [ema])
    current = weights_of(model)
    trainable = {id(v) for v in model.trainable_variables}
    for variable, averaged, now in zip(model.weights, ema.averaged_weights(),
                                       current, strict=True):
        if id(variable) not in trainable:
            np.testing.assert_array_equal(averaged, now)


def test_the_optimizer_keeps_only_its_own_variables_after_fit(tmp_path):
    model = tiny_model()
    own = len(tiny_model().optimizer.variables)
    fit(model, [ExponentialMovingAverage(0.9)])
    plain = tiny_model()
    fit(plain, [])
    assert len(model.optimizer.variables) == len(plain.optimizer.variables)
    assert own <= len(plain.optimizer.variables)
    path = str(tmp_path / "model.keras")
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading"
        loaded = keras.models.load_model(path)
    assert_identical(weights_of(loaded), weights_of(model))


def test_state_round_trip():
    model = tiny_model()
    ema = ExponentialMovingAverage(0.9, apply_at_end=False)
    fit(model, [ema])
    state = ema.get_state()
    other = ExponentialMovingAverage(0.9, apply_at_end=False)
    other.set_state(state)  # before the model is known: applied at set_model
    fit(model, [other], epochs=0)
    assert other.num_averaged == ema.num_averaged
    assert_identical(other.averaged_weights(), ema.averaged_weights())


# the other callback order is `slow` (.ci/run), as SWA's
@pytest.mark.parametrize(
    "backup_first", [pytest.param(True, marks=pytest.mark.slow), False]
)
def test_resumed_with_backup_and_restore_equals_uninterrupted(
    backup_first, tmp_path
):
    def run(callbacks):
        model = tiny_model()
        fit(model, callbacks, epochs=5)
        return model

    reference = ExponentialMovingAverage(0.9)
    run([reference])

    def with_backup(extra):
        ema = ExponentialMovingAverage(0.9)
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        callbacks = [backup, ema] if backup_first else [ema, backup]
        return ema, run(callbacks + extra)

    with pytest.raises(RuntimeError, match="simulated preemption"):
        with_backup([Interrupt(3)])
    ema, model = with_backup([])  # a fresh process would do the same
    assert ema.num_averaged == reference.num_averaged
    assert_close(ema.averaged_weights(), reference.averaged_weights(),
                 atol=1e-6)
    assert_close(ema.raw_weights(), reference.raw_weights(), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"decay": 1.5}, ValueError, "`decay` must be in (0, 1). Received: decay=1.5"),
        ({"decay": 0}, ValueError, "Received: decay=0"),
        ({"decay": "0.9"}, TypeError, "Received: decay='0.9'"),
        ({"every": 0}, ValueError, "`every` must be >= 1. Received: every=0"),
        ({"every": 2.0}, TypeError, "Received: every=2.0"),
        ({"warmup": 1}, TypeError, "Received: warmup=1"),
        ({"validate_with_average": "yes"}, TypeError,
         "Received: validate_with_average='yes'"),
        ({"apply_at_end": False, "batchnorm_data": np.zeros((2, 4))},
         ValueError, "Received: apply_at_end=False"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, text):
    with pytest.raises(error) as info:
        ExponentialMovingAverage(**kwargs)
    assert text in str(info.value)


def test_asking_for_the_average_before_fit_says_why():
    with pytest.raises(ValueError, match="starts when `fit` is called"):
        ExponentialMovingAverage().averaged_weights()


def test_config_round_trip():
    ema = ExponentialMovingAverage(0.99, warmup=False, every=3,
                                   validate_with_average=True)
    again = ExponentialMovingAverage(**ema.get_config())
    assert again.get_config() == ema.get_config()


def test_train_end_and_begin_swap_bit_for_bit():
    """End applies the average; the next begin puts the raw weights back."""
    model = tiny_model()
    ema = ExponentialMovingAverage(0.9, every=1)
    fit(model, [ema], epochs=2)
    raw, averaged = ema.raw_weights(), weights_of(model)
    probe = WeightRecorder()
    fit(model, [ema, probe], epochs=2, initial_epoch=2)  # no epoch to run
    assert_identical(probe.trajectory[0], raw)  # what train begin restored
    assert_identical(weights_of(model), averaged)  # what train end applied
    assert_identical(ema.raw_weights(), raw)


def test_weights_loaded_after_fit_are_left_alone():
    model = tiny_model()
    ema = ExponentialMovingAverage(0.9, every=1)
    fit(model, [ema], epochs=1)
    other = [w + 1.0 for w in weights_of(model)]
    model.set_weights(other)
    probe = WeightRecorder()
    fit(model, [ema, probe], epochs=1, initial_epoch=1)
    assert_identical(probe.trajectory[0], other)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_batchnorm_data_string_is_refused():
    # before: accepted (a string is iterable), then train end failed while
    # recomputing the statistics
    with pytest.raises(TypeError, match=r"`batchnorm_data` must be"):
        ExponentialMovingAverage(batchnorm_data="x")
