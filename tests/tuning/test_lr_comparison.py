import keras
import numpy as np
import pytest

from keras_trainopt import compare_learning_rates
from tests import tb

RATES = (1e-4, 0.05, 5.0)


def data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    return x, y


def build_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    return model


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb")
    x, y = data()
    result = compare_learning_rates(build_model, x, y, learning_rates=RATES,
                                    epochs=3, batch_size=16, seed=3,
                                    log_dir=str(log_dir))
    return result, str(log_dir), x, y


def numpy_sgd(x, y, w, b, rate, orders, batch_size):
    """Plain SGD on the mean squared error, in NumPy: the loss of each step."""
    w, b, losses = w.astype("float64"), b.astype("float64"), []
    for order in orders:
        for start in range(0, len(x), batch_size):
            xb = x[order[start:start + batch_size]].astype("float64")
            yb = y[order[start:start + batch_size]].astype("float64")
            residual = xb @ w + b - yb
            losses.append(float(np.mean(residual**2)))
            w = w - rate * 2 * xb.T @ residual / len(xb)
            b = b - rate * 2 * residual.mean(axis=0)
    return losses


def test_each_curve_is_plain_sgd_from_the_same_weights_and_batches(compared):
    result, _, x, y = compared
    # same initial weights and first batch: the same first loss at any rate
    firsts = [result.step_losses[rate][0] for rate in RATES]
    np.testing.assert_allclose(firsts, firsts[0], rtol=1e-6)
    # the documented batch order: one permutation per epoch, from the seed
    orders = [np.random.default_rng([3, epoch]).permutation(len(x))
              for epoch in range(3)]
    keras.utils.set_random_seed(3)
    w, b = build_model().get_weights()
    for rate in (1e-4, 0.05):
        expected = numpy_sgd(x, y, w, b, rate, orders, 16)
        np.testing.assert_allclose(result.step_losses[rate], expected,
                                   rtol=2e-3, atol=1e-6)
        assert result.steps[rate] == list(range(1, 49))
    # the epoch losses are the means of the epoch's step losses
    for rate in (1e-4, 0.05):
        np.testing.assert_allclose(
            result.epoch_losses[rate],
            np.mean(np.reshape(result.step_losses[rate], (3, 16)), axis=1),
            rtol=1e-5)


def test_verdicts_and_the_recommended_rate(compared):
    result, *_ = compared
    assert result.diagnoses == {1e-4: "too_low", 0.05: "good",
                                5.0: "too_high"}
    assert result.recommended == 0.05
    assert len(result.step_losses[5.0]) < 48  # stopped when it diverged
    assert result.val_losses is None


def test_one_tensorboard_run_per_rate(compared):
    result, log_dir, *_ = compared
    assert tb.runs(log_dir) == ["lr=0.0001", "lr=0.05", "lr=5"]
    for rate, run in zip(RATES, ["lr=0.0001", "lr=0.05", "lr=5"], strict=True):
        written = tb.scalars(f"{log_dir}/{run}", "loss_monitor/batch_loss")
        assert [step for step, _ in written] == result.steps[rate]
        np.testing.assert_allclose([v for _, v in written],
                                   result.step_losses[rate], rtol=1e-6)
        epochs = tb.scalars(f"{log_dir}/{run}", "epoch_loss")
        np.testing.assert_allclose([v for _, v in epochs],
                                   result.epoch_losses[rate], rtol=1e-6)


def test_plot_draws_one_labelled_line_per_rate(compared):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    result, *_ = compared
    ax = result.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["lr=0.0001 (too_low)", "lr=0.05 (good), recommended",
                      "lr=5 (too_high)"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(),
                               result.step_losses[0.05])
    ax = result.plot(per="epoch")
    assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    matplotlib.pyplot.close("all")


def test_validation_losses_pick_the_rate():
    x, y = data(192)
    result = compare_learning_rates(
        build_model, x[:128], y[:128], learning_rates=[0.01, 0.05],
        epochs=2, batch_size=8, validation_data=(x[128:], y[128:]))
    assert set(result.val_losses) == {0.01, 0.05}
    best = min(result.val_losses, key=lambda r: result.val_losses[r][-1])
    assert result.recommended == best


@pytest.mark.parametrize("rates", [(), [0.1, -1.0], [0.1, float("nan")],
                                   "0.1", [0.1, "a"], 0.1])
def test_bad_rates_are_refused(rates):
    x, y = data(32)
    with pytest.raises(ValueError, match=r"`learning_rates` must be a "
                       r"non-empty sequence of positive floats\. Received: "
                       r"learning_rates="):
        compare_learning_rates(build_model, x, y, learning_rates=rates)


def test_bad_arguments():
    x, y = data(32)
    with pytest.raises(TypeError, match="`build_model` must be a function"):
        compare_learning_rates(build_model(), x, y)
    with pytest.raises(ValueError, match="must not repeat a rate"):
        compare_learning_rates(build_model, x, y, learning_rates=[0.1, 0.1])
    with pytest.raises(ValueError, match="Received: epochs=0"):
        compare_learning_rates(build_model, x, y, epochs=0)

    def uncompiled():
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])

    with pytest.raises(ValueError, match="must return a compiled model"):
        compare_learning_rates(uncompiled, x, y, learning_rates=[0.1])


# -- data that yields its own batches, and several inputs ----------------------


class FixedBatches(keras.utils.PyDataset):
    """The data in 16 fixed batches of 16, the same at every read."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 16

    def __getitem__(self, index):
        part = slice(16 * index, 16 * (index + 1))
        return self.x[part], self.y[part]


def test_a_py_dataset_is_plain_sgd_on_its_batches_in_its_order():
    x, y = data()
    result = compare_learning_rates(build_model, FixedBatches(x, y),
                                    learning_rates=(1e-4, 0.05), epochs=2,
                                    seed=3)
    keras.utils.set_random_seed(3)
    w, b = build_model().get_weights()
    in_order = [np.arange(len(x))] * 2  # the dataset's own order, twice
    for rate in (1e-4, 0.05):
        np.testing.assert_allclose(
            result.step_losses[rate],
            numpy_sgd(x, y, w, b, rate, in_order, 16), rtol=2e-3, atol=1e-6)


def test_a_repeating_tf_data_needs_steps_per_epoch():
    tf = pytest.importorskip("tensorflow")
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    with pytest.raises(ValueError, match=r"never ends.*pass "
                       r"`steps_per_epoch`.*Received: steps_per_epoch=None"):
        compare_learning_rates(build_model, dataset, learning_rates=(0.05,))
    result = compare_learning_rates(build_model, dataset,
                                    learning_rates=(0.05,), epochs=2,
                                    steps_per_epoch=4, seed=3)
    keras.utils.set_random_seed(3)
    w, b = build_model().get_weights()
    # epoch 2 goes on where epoch 1 stopped: batches 0-3, then 4-7
    expected = numpy_sgd(x[:128], y[:128], w, b, 0.05, [np.arange(128)], 16)
    np.testing.assert_allclose(result.step_losses[0.05], expected,
                               rtol=2e-3, atol=1e-6)


def test_arrays_for_several_inputs_are_permuted_together():
    x, y = data()
    inputs = [keras.Input((5,)), keras.Input((3,))]
    concatenated = keras.layers.Concatenate()(inputs)

    def build_two_inputs():
        model = keras.Model(inputs, keras.layers.Dense(1)(concatenated))
        model.compile(keras.optimizers.SGD(), loss="mse")
        return model

    result = compare_learning_rates(
        build_two_inputs, [x[:, :5], x[:, 5:]], y, learning_rates=(0.05,),
        epochs=2, batch_size=16, seed=3)
    keras.utils.set_random_seed(3)
    w, b = build_two_inputs().get_weights()
    orders = [np.random.default_rng([3, epoch]).permutation(len(x))
              for epoch in range(2)]
    np.testing.assert_allclose(result.step_losses[0.05],
                               numpy_sgd(x, y, w, b, 0.05, orders, 16),
                               rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    (dict(y=np.zeros((256, 1))), "y"), (dict(batch_size=16), "batch_size")])
def test_array_arguments_with_batches_are_refused_by_name(kwargs, name):
    x, y = data()
    with pytest.raises(ValueError, match=rf"`{name}` is for arrays: `x` is a "
                       rf"FixedBatches.*Received: {name}="):
        compare_learning_rates(build_model, FixedBatches(x, y), **kwargs)
