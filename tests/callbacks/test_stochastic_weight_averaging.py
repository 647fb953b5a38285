import keras
import numpy as np
import pytest

from keras_trainopt import StochasticWeightAveraging
from keras_trainopt import UpdateRatioLogger
from tests.callbacks.helpers import Interrupt
from tests.callbacks.helpers import RateAtBatchEnd
from tests.callbacks.helpers import WeightRecorder
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model
from tests.callbacks.helpers import weights_of


def fit(model, callbacks, epochs=5, **kwargs):
    x, y = tiny_data(48)
    return model.fit(x, y, epochs=epochs, batch_size=8, callbacks=callbacks,
                     verbose=0, shuffle=False, **kwargs)


def plain_mean(epoch_ends):
    return [np.mean(np.stack(ws), axis=0) for ws in zip(*epoch_ends, strict=True)]


def assert_close(actual, expected, atol=1e-6):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=atol)


@pytest.mark.parametrize("start_epoch", [0, 2, 4])
def test_equals_the_plain_mean_of_end_of_epoch_weights(start_epoch):
    model = tiny_model()
    recorder = WeightRecorder()
    swa = StochasticWeightAveraging(start_epoch, apply_at_end=False)
    fit(model, [recorder, swa])
    assert swa.num_averaged == 5 - start_epoch
    assert_close(swa.averaged_weights(),
                 plain_mean(recorder.epoch_ends[start_epoch:]))


def test_the_model_holds_the_mean_at_end():
    model = tiny_model()
    recorder = WeightRecorder()
    swa = StochasticWeightAveraging(1)
    fit(model, [recorder, swa])
    assert_close(weights_of(model), plain_mean(recorder.epoch_ends[1:]))
    for raw, last in zip(swa.raw_weights(), recorder.epoch_ends[-1], strict=True):
        np.testing.assert_array_equal(raw, last)


def test_constant_swa_rate_from_start_epoch_on():
    model = tiny_model(keras.optimizers.SGD(0.1))
    rates = RateAtBatchEnd()
    fit(model, [StochasticWeightAveraging(2, swa_learning_rate=0.02), rates])
    steps = 6
    assert rates.rates[: 2 * steps] == pytest.approx([0.1] * 2 * steps)
    assert rates.rates[2 * steps:] == pytest.approx([0.02] * 3 * steps)


def test_cyclic_swa_rate_matches_izmailov_formula_at_every_step():
    high, low, steps = 0.05, 0.01, 6
    model = tiny_model(keras.optimizers.SGD(0.1))
    rates = RateAtBatchEnd()
    fit(model, [StochasticWeightAveraging(1, swa_learning_rate=(high, low)),
                rates])
    for i, rate in enumerate(rates.rates):
        if i < steps:
            expected = 0.1
        else:
            # Izmailov et al. eq. 2 with c = steps, i counted from 1
            t = ((i - steps) % steps + 1) / steps
            expected = (1 - t) * high + t * low
        assert rate == pytest.approx(expected, rel=1e-6), i
    # every averaged point was taken at the low end of a cycle
    assert rates.rates[steps - 1 + steps:: steps] == pytest.approx(
        [low] * 4, rel=1e-6
    )


def test_batchnorm_statistics_are_recomputed_for_the_average():
    x, y = tiny_data(48)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(6),
        keras.layers.BatchNormalization(), keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(0.05), loss="mse")
    swa = StochasticWeightAveraging(1, batchnorm_data=x)
    fit(model, [swa])
    dense, bn = model.layers[0], model.layers[1]
    # NumPy reference: the BN input of the averaged Dense layer on x
    kernel, bias = (np.asarray(v, "float64") for v in dense.get_weights())
    inputs = x.astype("float64") @ kernel + bias
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(0),
                               rtol=1e-5, atol=1e-6)


def test_no_average_yet_leaves_the_model_alone():
    model = tiny_model()
    recorder = WeightRecorder()
    swa = StochasticWeightAveraging(9)
    with pytest.warns(UserWarning, match="no weights were averaged"):
        fit(model, [recorder, swa], epochs=2)
    for now, last in zip(weights_of(model), recorder.epoch_ends[-1], strict=True):
        np.testing.assert_array_equal(now, last)


@pytest.mark.parametrize("start_epoch", [0, 1])
def test_unknown_epoch_length_is_refused_before_the_first_step(start_epoch):
    """Also when averaging starts later: no epoch is trained for nothing."""
    x, y = tiny_data(48)
    served = []

    def batches():
        for i in range(6):  # a finite generator: Keras cannot know its length
            served.append(i)
            yield x[8 * i:8 * i + 8], y[8 * i:8 * i + 8]

    model = tiny_model()
    before = weights_of(model)
    with pytest.raises(ValueError, match="Pass `steps_per_epoch`.*repeat"):
        model.fit(batches(), epochs=2, verbose=0, shuffle=False,
                  callbacks=[StochasticWeightAveraging(start_epoch)])
    for now, then in zip(weights_of(model), before, strict=True):
        np.testing.assert_array_equal(now, then)  # not one update
    plain = tiny_model()
    assert len(model.optimizer.variables) == len(plain.optimizer.variables)


# the other order of the two callbacks under `slow` (`.ci/run`)
@pytest.mark.parametrize(
    "backup_first", [pytest.param(True, marks=pytest.mark.slow), False]
)
def test_resumed_with_backup_and_restore_equals_uninterrupted(
    backup_first, tmp_path
):
    def run(extra=()):
        model = tiny_model()
        swa = StochasticWeightAveraging(1, swa_learning_rate=(0.1, 0.02))
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        callbacks = [backup, swa] if backup_first else [swa, backup]
        fit(model, callbacks + list(extra))
        return swa

    reference = StochasticWeightAveraging(1, swa_learning_rate=(0.1, 0.02))
    fit(tiny_model(), [reference])
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run([Interrupt(3)])
    resumed = run()
    assert resumed.num_averaged == reference.num_averaged == 4
    assert_close(resumed.averaged_weights(), reference.averaged_weights())


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"start_epoch": -1}, ValueError, "Received: start_epoch=-1"),
        ({"start_epoch": 1.5}, TypeError, "Received: start_epoch=1.5"),
        ({"start_epoch": 0, "swa_learning_rate": 0}, ValueError,
         "Received: swa_learning_rate=0"),
        ({"start_epoch": 0, "swa_learning_rate": (0.01, 0.1)}, ValueError,
         "Received: swa_learning_rate=(0.01, 0.1)"),
        ({"start_epoch": 0, "swa_learning_rate": "0.1"}, TypeError,
         "Received: swa_learning_rate='0.1'"),
        ({"start_epoch": 0, "swa_learning_rate": (0.1, -1)}, ValueError,
         "Received: swa_learning_rate[1]=-1"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, text):
    with pytest.raises(error) as info:
        StochasticWeightAveraging(**kwargs)
    assert text in str(info.value)


def test_config_round_trip():
    swa = StochasticWeightAveraging(3, swa_learning_rate=(0.1, 0.01))
    again = StochasticWeightAveraging(**swa.get_config())
    assert again.get_config() == swa.get_config()
    assert again.swa_learning_rate == (0.1, 0.01)


def test_a_step_traced_mid_epoch_keeps_the_training_state():
    # The update-ratio probe's train functions are each traced at their
    # first use, in the middle of an epoch. SWA's in-step rate must not sync
    # JAX's live state there (through Keras' `Callback.model`): the next
    # step then started from the state before the traced one. Reference:
    # the same run without the probe, which changes no weight.
    runs = []
    for probe in ([], [UpdateRatioLogger(every=5, verbose=0)]):
        model = tiny_model(keras.optimizers.SGD(0.1))
        swa = StochasticWeightAveraging(2, swa_learning_rate=0.02)
        recorder = WeightRecorder()
        fit(model, [swa, *probe, recorder])
        runs.append(recorder.epoch_ends + [weights_of(model)])
    for without, with_probe in zip(*runs, strict=True):
        assert_close(with_probe, without)
