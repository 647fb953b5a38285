"""A run that blows up: averages stay clean, monitors say so, weights survive.

A learning rate far too high drives the loss to inf and the weights to NaN
within a few updates. Every keras_trainopt callback in the run must cope:
the running averages leave the non-finite updates out (and count them), the
monitors report the divergence, training stops at the end of that epoch, and
the model ends with the last good (finite) weights.
"""

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import weights_of


def exploding_run(*callbacks):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(1e4), loss="mse")
    x, y = tiny_data(64)
    recorder = WeightRecorder()
    history = model.fit(
        x, y * 100, batch_size=8, epochs=5, shuffle=False, verbose=0,
        validation_data=(x[:16], y[:16] * 100), callbacks=[*callbacks, recorder],
    )
    return model, history, recorder


def finite(arrays):
    return all(np.isfinite(a).all() for a in arrays)


def test_a_diverging_run_keeps_averages_finite_and_stops_with_good_weights():
    ema = kt.ExponentialMovingAverage(0.5, every=1, apply_at_end=False)
    swa = kt.StochasticWeightAveraging(start_epoch=0, apply_at_end=False)
    monitor = kt.LossMonitor(every=1, restore_weights=True, verbose=0)
    ratios = kt.UpdateRatioLogger(every=1, verbose=0)
    model, history, recorder = exploding_run(ema, swa, monitor, ratios)

    # stopped in the first epoch (the monitor reads its readings at most
    # once per 32 updates, and at the epoch's end); the first non-finite
    # loss is that of the first update that left non-finite weights
    assert len(history.epoch) == 1 < 5
    blown = [not finite(w) for w in recorder.trajectory[1:]]
    assert monitor.diverged_at_step == blown.index(True) + 1
    assert monitor.diagnosis == "learning_rate_too_high"
    assert "inf" in monitor.reason or "nan" in monitor.reason
    assert "restored" in monitor.reason
    # the EMA left the non-finite updates out, and counted them; SWA averages
    # at the last update of an epoch (the 8th), skipped if not finite
    assert finite(ema.averaged_weights())
    assert ema.num_skipped == sum(blown) >= 2
    assert ema.num_averaged + ema.num_skipped == len(recorder.trajectory) - 1
    assert finite(swa.averaged_weights())
    assert swa.num_skipped == int(len(blown) == 8 and blown[-1])
    # the model ends with the weights from the start of the epoch
    assert finite(weights_of(model))
    for got, want in zip(weights_of(model), recorder.trajectory[0], strict=True):
        np.testing.assert_array_equal(got, want)
    # the update ratios say that the weights overflowed
    assert any(not np.isfinite(r) for r in ratios.layer_ratios.values())


def test_the_doctor_reports_the_blow_up():
    doctor = kt.TrainingDoctor(metric="loss", every=1, update_ratio_every=1,
                               verbose=0)
    _, history, _ = exploding_run(doctor)
    assert len(history.epoch) == 1
    messages = " ".join(a.message for a in doctor.advice)
    assert "learning rate too high" in messages


# every=3 (a stride over the skipped points) by default; every=1 `slow`
@pytest.mark.parametrize("every", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_averages_of_a_run_left_diverged_skip_every_non_finite_point(every):
    ema = kt.ExponentialMovingAverage(0.5, warmup=False, every=every,
                                      apply_at_end=False)
    swa = kt.StochasticWeightAveraging(start_epoch=0, apply_at_end=False)
    _, _, recorder = exploding_run(ema, swa)  # nothing stops it
    assert not finite(recorder.trajectory[-1]), "the test run did not diverge"
    assert finite(swa.averaged_weights())
    assert (swa.num_averaged, swa.num_skipped) == (0, 5)  # every epoch end
    # independent reference: the EMA over every `every`-th update whose
    # weights are all finite, starting from the initial weights
    average = [np.array(w, "float64") for w in recorder.trajectory[0]]
    for step, weights in enumerate(recorder.trajectory[1:], start=1):
        if step % every or not finite(weights):
            continue
        average = [0.5 * a + 0.5 * w for a, w in zip(average, weights, strict=True)]
    for got, want in zip(ema.averaged_weights(), average, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_without_the_check_a_diverged_run_poisons_the_averages():
    # skip_non_finite=False drops the finiteness check (one sum over the
    # weights per averaged update), as Keras' use_ema has none: every due
    # update is averaged, the first non-finite one included, for good.
    ema = kt.ExponentialMovingAverage(0.5, warmup=False, every=1,
                                      apply_at_end=False,
                                      skip_non_finite=False)
    swa = kt.StochasticWeightAveraging(start_epoch=0, apply_at_end=False,
                                       skip_non_finite=False)
    _, _, recorder = exploding_run(ema, swa)
    updates = len(recorder.trajectory) - 1
    assert not finite(recorder.trajectory[-1]), "the test run did not diverge"
    assert (ema.num_averaged, ema.num_skipped) == (updates, 0)
    assert (swa.num_averaged, swa.num_skipped) == (5, 0)
    assert not finite(ema.averaged_weights())
    assert not finite(swa.averaged_weights())
