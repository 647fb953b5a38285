import random
import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import find_learning_rate
from tests.callbacks.helpers import weights_of


def least_squares(n=512, d=10, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * np.linspace(0.2, 3.0, d)).astype("float32")
    y = (x @ rng.normal(size=(d, 1))).astype("float32")
    hessian = 2 * x.astype("float64").T @ x / n  # of mean((Xw - y)^2)
    bound = 2 / np.linalg.eigvalsh(hessian).max()  # GD diverges above it
    return x, y, bound


def linear_model(d=10, optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((d,)),
                              keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer or keras.optimizers.SGD(0.01), loss="mse")
    return model


@pytest.mark.parametrize("rule", ["steepest", "minimum", "valley"])
def test_suggestion_sits_below_the_divergence_bound_of_least_squares(rule):
    x, y, bound = least_squares()
    result = find_learning_rate(linear_model(), x, y, batch_size=512,
                                lr_min=1e-5, lr_max=10.0, steps=100, rule=rule)
    assert result.rule == rule
    assert result.warnings == []
    assert bound / 100 < result.suggestion < bound
    assert result.stopped_early  # the sweep went past the bound and stopped


def test_the_default_rule_is_minimum_a_tenth_of_the_lowest_losss_rate():
    # chosen by benchmarks/range_test_rules.py (docs/search.md)
    x, y, _ = least_squares()
    result = find_learning_rate(linear_model(), x, y, batch_size=512,
                                lr_min=1e-5, lr_max=10.0, steps=100)
    assert result.rule == "minimum"
    rates = np.asarray(result.learning_rates)
    smoothed = np.asarray(result.smoothed_losses)
    assert result.suggestion == pytest.approx(
        rates[np.nanargmin(smoothed)] / 10)


def test_a_flat_curve_warns_that_the_suggestion_is_unreliable():
    # zero inputs, no bias: the gradient is 0 and the loss never moves
    x = np.zeros((64, 10), "float32")
    y = np.random.default_rng(0).normal(size=(64, 1)).astype("float32")
    with pytest.warns(UserWarning, match=r"fell by only 0\.0% during"):
        result = find_learning_rate(linear_model(), x, y, batch_size=64,
                                    steps=20)
    assert len(result.warnings) == 1
    assert not result.stopped_early


# short sweeps at small rates: the curve is flat on purpose
@pytest.mark.filterwarnings("ignore:find_learning_rate:UserWarning")
def test_rates_rise_exponentially_and_the_loss_is_smoothed():
    x, y, _ = least_squares()
    result = find_learning_rate(linear_model(), x, y, lr_min=1e-6,
                                lr_max=1e-2, steps=20)
    expected = [1e-6 * (1e4) ** (i / 19) for i in range(20)]
    assert result.learning_rates == pytest.approx(expected, rel=1e-12)
    assert not result.stopped_early and len(result.losses) == 20
    average, smoothed = 0.0, []
    for i, loss in enumerate(result.losses):  # REFERENCE.md, beta = 0.98
        average = 0.98 * average + 0.02 * loss
        smoothed.append(average / (1 - 0.98 ** (i + 1)))
    assert result.smoothed_losses == pytest.approx(smoothed, rel=1e-12)


def test_stops_once_the_smoothed_loss_passes_four_times_its_minimum():
    x, y, _ = least_squares()
    result = find_learning_rate(linear_model(), x, y, lr_min=1e-3,
                                lr_max=1e3, steps=200)
    assert result.stopped_early and len(result.losses) < 200
    last = result.smoothed_losses[-1]
    assert not np.isfinite(last) or last > 4 * min(result.smoothed_losses)
    assert all(v <= 4 * min(result.smoothed_losses[: i + 1])
               for i, v in enumerate(result.smoothed_losses[:-1]))



def test_a_loss_below_zero_is_swept_until_it_stops_being_finite():
    # The divergence rule is `diagnostics.loss_curve.is_diverging`, as in
    # LossMonitor: a ratio to a best loss <= 0 means nothing, so a loss
    # shifted below zero stops the sweep only once it is no longer finite
    # (before: the sweep always stopped at its second step). The shift
    # leaves the gradients, hence the run, as they are.
    x, y, _ = least_squares()

    def shifted(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred)) - 1e6

    plain = find_learning_rate(linear_model(), x, y, lr_min=1e-3,
                               lr_max=1e3, steps=200)
    model = linear_model()
    model.compile(keras.optimizers.SGD(0.01), loss=shifted)
    result = find_learning_rate(model, x, y, lr_min=1e-3, lr_max=1e3,
                                steps=200)
    assert result.stopped_early
    assert len(plain.losses) < len(result.losses)
    assert not np.isfinite(result.smoothed_losses[-1])
    assert all(np.isfinite(result.smoothed_losses[:-1]))
    n = len(plain.losses)
    np.testing.assert_allclose(np.array(result.losses[:n]) + 1e6,
                               plain.losses, rtol=1e-3, atol=0.2)

def test_everything_is_restored_afterwards():
    x, y, _ = least_squares()
    model = linear_model(optimizer=keras.optimizers.SGD(0.003, momentum=0.9))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # non-zero momentum
    weights = weights_of(model)
    slots = [np.array(keras.ops.convert_to_numpy(v.value))
             for v in model.optimizer.variables]
    random.seed(5)
    np.random.seed(5)
    expected_draws = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    find_learning_rate(model, x, y, lr_min=1e-4, lr_max=10.0, steps=50)
    for a, b in zip(weights_of(model), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    for variable, value in zip(model.optimizer.variables, slots, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable.value), value)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.003)
    assert (random.random(), np.random.rand()) == expected_draws


def test_restored_also_when_the_sweep_raises():
    x, y, _ = least_squares()
    model = linear_model()
    weights = weights_of(model)
    real = model.train_on_batch
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    model.train_on_batch = failing
    with pytest.raises(RuntimeError, match="boom"):
        find_learning_rate(model, x, y, steps=50)
    del model.train_on_batch
    for a, b in zip(weights_of(model), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert int(model.optimizer.iterations) == 0


def test_keras_seed_generator_state_is_restored():
    x, y, _ = least_squares()
    keras.utils.set_random_seed(11)
    keras.random.uniform(())  # the global generator exists now
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dropout(0.5),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    keras.utils.set_random_seed(11)
    keras.random.uniform(())
    expected = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
    keras.utils.set_random_seed(11)
    keras.random.uniform(())
    find_learning_rate(model, x, y, steps=10)
    got = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
    np.testing.assert_array_equal(got, expected)


def test_plot_draws_the_curve_and_the_suggestions():
    import matplotlib

    matplotlib.use("Agg")
    x, y, _ = least_squares()
    result = find_learning_rate(linear_model(), x, y, steps=30)
    ax = result.plot()
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 2 + len(result.suggestions)



@pytest.mark.filterwarnings("ignore:find_learning_rate:UserWarning")
def test_verbose_output_goes_where_keras_sends_its_own(capsys):
    # Keras' fit progress goes to stdout, or to absl logging once interactive
    # logging is off (`keras.config.disable_interactive_logging`): so does
    # the suggestion.
    x, y, _ = least_squares()
    find_learning_rate(linear_model(), x, y, steps=5, verbose=1)
    printed = capsys.readouterr().out
    assert printed.startswith("find_learning_rate: 5 steps from 1e-07 to 10")
    assert printed.endswith("\n") and "suggestion (minimum)" in printed
    keras.config.disable_interactive_logging()
    try:
        find_learning_rate(linear_model(), x, y, steps=5, verbose=1)
        linear_model().fit(x, y, epochs=1, verbose=2)
    finally:
        keras.config.enable_interactive_logging()
    assert capsys.readouterr().out == ""

@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"lr_min": 1.0, "lr_max": 0.1}, ValueError,
         "Received: lr_min=1, lr_max=0.1"),
        ({"lr_min": 0.0}, ValueError, "Received: lr_min=0"),
        ({"steps": 1}, ValueError, "`steps` must be >= 2. Received: steps=1"),
        ({"batch_size": 1000}, ValueError, "Received: batch_size=1000"),
        ({"rule": "best"}, ValueError, "Received: rule='best'"),
        ({"smoothing": 1.0}, ValueError, "Received: smoothing=1"),
        ({"divergence_threshold": 1.0}, ValueError,
         "Received: divergence_threshold=1"),
    ],
)
def test_bad_arguments_are_refused_before_any_step(kwargs, error, text):
    x, y, _ = least_squares()
    model = linear_model()
    weights = weights_of(model)
    with pytest.raises(error) as info:
        find_learning_rate(model, x, y, **kwargs)
    assert text in str(info.value)
    assert int(model.optimizer.iterations) == 0
    for a, b in zip(weights_of(model), weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_model_must_be_compiled_with_a_settable_rate():
    x, y, _ = least_squares()
    bare = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="must be compiled"):
        find_learning_rate(bare, x, y)
    scheduled = linear_model(optimizer=keras.optimizers.SGD(
        keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)))
    with pytest.raises(TypeError, match="find_learning_rate sets the"):
        find_learning_rate(scheduled, x, y)
    with pytest.raises(TypeError, match="Received: model='model'"):
        find_learning_rate("model", x, y)


# short sweeps at small rates: the curve is flat on purpose
@pytest.mark.filterwarnings("ignore:find_learning_rate:UserWarning")
def test_layer_seed_generators_are_restored():
    x, y, _ = least_squares()
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dropout(0.3),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    before = [np.array(keras.ops.convert_to_numpy(v.value))
              for v in model.variables]
    find_learning_rate(model, x, y, steps=10)
    after = [np.array(keras.ops.convert_to_numpy(v.value))
             for v in model.variables]
    assert len(before) == len(after) == 3  # seed state, kernel, bias
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_batch_larger_than_the_data_names_batch_size():
    # before: "The data has 8 samples, fewer than one batch", no backticks
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    with pytest.raises(ValueError, match=r"`batch_size` must be at most"):
        find_learning_rate(model, np.ones((8, 2)), np.ones((8, 1)),
                           batch_size=9)


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr_min=1e-320), "lr_min"),  # found by fuzzing: swept up to inf
    (dict(lr_max=1e39), "lr_max"),
])
def test_rates_beyond_float32_are_refused_by_name(kwargs, name):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.zeros((8, 4), "float32")
    with pytest.raises(ValueError, match=rf"`{name}` must be"):
        find_learning_rate(model, x, x[:, :1], **kwargs)


def test_under_gradient_accumulation_each_rate_makes_one_update():
    # k batches of 8 make one update with their mean gradient: the update,
    # and the mean loss, of one batch of 8k without accumulation (one pass
    # over the data: 8 rates of 4 x 8 samples each)
    x, y, _ = least_squares(n=256)
    plain = find_learning_rate(linear_model(), x, y, batch_size=32,
                               lr_min=1e-3, lr_max=0.1, steps=8, seed=3)
    accumulating = find_learning_rate(
        linear_model(optimizer=keras.optimizers.SGD(
            0.01, gradient_accumulation_steps=4)),
        x, y, batch_size=8, lr_min=1e-3, lr_max=0.1, steps=8, seed=3)
    assert accumulating.learning_rates == plain.learning_rates
    assert len(plain.losses) == 8
    np.testing.assert_allclose(accumulating.losses, plain.losses, rtol=1e-4)


# -- data that yields its own batches, as `fit` takes it ----------------------

LR_MIN, LR_MAX, STEPS = 1e-3, 0.1, 10


def sweep_rates():
    return [LR_MIN * (LR_MAX / LR_MIN) ** (i / (STEPS - 1)) for i in range(STEPS)]


def plain_keras_sweep(batches):
    """The reference: Keras alone, one `train_on_batch` per rate on the
    batches in their order, started over at their end."""
    model = linear_model()
    losses = []
    for i, rate in enumerate(sweep_rates()):
        model.optimizer.learning_rate.assign(rate)
        x, y, *weights = batches[i % len(batches)]
        losses.append(float(model.train_on_batch(
            x, y, sample_weight=weights[0] if weights else None,
            return_dict=True)["loss"]))
    return losses


def sweep(data):
    with warnings.catch_warnings():  # a short sweep: the suggestion's doubts
        warnings.simplefilter("ignore", UserWarning)
        return find_learning_rate(linear_model(), data, lr_min=LR_MIN,
                                  lr_max=LR_MAX, steps=STEPS)


def four_batches(weighted=False):
    x, y, _ = least_squares(n=64)
    w = np.linspace(0.5, 1.5, 64).astype("float32")
    return [(x[i:i + 16], y[i:i + 16], *([w[i:i + 16]] if weighted else []))
            for i in range(0, 64, 16)]


@pytest.mark.parametrize("repeat", [False, True])
def test_a_tf_data_dataset_is_swept_in_its_order_and_started_over(repeat):
    tf = pytest.importorskip("tensorflow")
    batches = four_batches()
    x, y = (np.concatenate(part) for part in zip(*batches, strict=True))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    result = sweep(dataset.repeat() if repeat else dataset)  # 10 of 4 batches
    assert result.learning_rates == pytest.approx(sweep_rates(), rel=1e-12)
    np.testing.assert_allclose(result.losses, plain_keras_sweep(batches),
                               rtol=1e-5)


class Batches(keras.utils.PyDataset):
    """A PyDataset of fixed batches, counting its epoch ends."""

    def __init__(self, batches):
        super().__init__()
        self.batches, self.epoch_ends = batches, 0

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]

    def on_epoch_end(self):
        self.epoch_ends += 1


def test_a_py_dataset_with_sample_weights_is_swept_as_keras_trains_it():
    batches = four_batches(weighted=True)
    data = Batches(batches)
    result = sweep(data)
    np.testing.assert_allclose(result.losses, plain_keras_sweep(batches),
                               rtol=1e-5)
    assert data.epoch_ends == 2  # between the passes: after 4 and 8 batches
    unweighted = plain_keras_sweep([b[:2] for b in batches])
    assert not np.allclose(result.losses, unweighted)  # the weights counted


def test_a_generator_that_runs_out_is_an_error_and_the_model_is_kept():
    model = linear_model()
    before = weights_of(model)
    batches = four_batches()
    with pytest.raises(ValueError, match=r"`x` ran out after 4 batches.*"
                       r"generator cannot be started over.*fewer `steps`"):
        find_learning_rate(model, (b for b in batches), steps=STEPS)
    for a, b in zip(weights_of(model), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_generator_long_enough_is_swept():
    batches = four_batches()
    result = sweep(batches[i % 4] for i in range(STEPS))
    np.testing.assert_allclose(result.losses, plain_keras_sweep(batches),
                               rtol=1e-5)


@pytest.mark.parametrize("kwargs, name", [
    (dict(y=np.zeros((64, 1))), "y"),
    (dict(batch_size=16), "batch_size"),
    (dict(seed=1), "seed"),
])
def test_array_arguments_with_batches_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=rf"`{name}` is for arrays: `x` is a "
                       rf"Batches.*Received: {name}="):
        find_learning_rate(linear_model(), Batches(four_batches()), **kwargs)


@pytest.mark.parametrize("x", ["digits.npy", 3.0])
def test_x_that_is_neither_arrays_nor_batches_is_refused(x):
    with pytest.raises(TypeError, match=r"`x` must be arrays .* Received: x "
                       r"of type (str|float)"):
        find_learning_rate(linear_model(), x)
