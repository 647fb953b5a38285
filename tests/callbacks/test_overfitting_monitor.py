import keras
import numpy as np
import pytest

from keras_trainopt import OverfittingMonitor
from tests import tb


def classifier(input_dim, hidden=None, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((input_dim,))]
    if hidden:
        layers.append(keras.layers.Dense(hidden, activation="relu"))
    layers.append(keras.layers.Dense(2, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_memorizing_random_labels_is_overfitting(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30)).astype("float32")
    y = rng.integers(0, 2, 200)
    monitor = OverfittingMonitor(log_dir=str(tmp_path), verbose=0)
    history = classifier(30, hidden=256).fit(
        x, y, validation_split=0.5, epochs=10, batch_size=20,
        callbacks=[monitor], verbose=0,
    )
    assert monitor.diagnosis == "overfitting", monitor.reason
    h = history.history
    expected = [a - v for a, v in zip(h["accuracy"], h["val_accuracy"], strict=True)]
    np.testing.assert_allclose(h["generalization_gap"], expected, atol=1e-7)
    written = tb.scalars(str(tmp_path / "monitors"), "generalization_gap")
    assert [s for s, _ in written] == list(range(10))
    np.testing.assert_allclose([v for _, v in written], expected, atol=1e-6)


def test_linear_model_on_circles_is_underfitting():
    sklearn = pytest.importorskip("sklearn.datasets")
    x, y = sklearn.make_circles(400, noise=0.05, factor=0.5, random_state=0)
    monitor = OverfittingMonitor(verbose=0)
    classifier(2).fit(x.astype("float32"), y, validation_split=0.5,
                      epochs=20, callbacks=[monitor], verbose=0)
    assert monitor.diagnosis == "underfitting", monitor.reason


def test_a_good_fit():
    sklearn = pytest.importorskip("sklearn.datasets")
    x, y = sklearn.make_circles(400, noise=0.05, factor=0.5, random_state=0)
    monitor = OverfittingMonitor(verbose=0)
    classifier(2, hidden=32).fit(x.astype("float32"), y, validation_split=0.5,
                                 epochs=15, callbacks=[monitor], verbose=0)
    assert monitor.diagnosis == "good_fit", monitor.reason


def test_loss_metric_gap_is_validation_minus_training():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 5)), rng.integers(0, 2, 100)
    monitor = OverfittingMonitor("loss", verbose=0)
    history = classifier(5).fit(x, y, validation_split=0.3, epochs=3,
                                callbacks=[monitor], verbose=0)
    h = history.history
    np.testing.assert_allclose(
        monitor.gaps, np.subtract(h["val_loss"], h["loss"]), atol=1e-7
    )
    assert monitor.lower_is_better and monitor.underfitting_value is None


def test_stop_and_restore_best_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30)).astype("float32")
    y = rng.integers(0, 2, 200)
    model = classifier(30, hidden=256)
    best = {}

    class KeepBest(keras.callbacks.Callback):  # independent bookkeeping
        def on_epoch_end(self, epoch, logs=None):
            if not best or logs["val_accuracy"] > best["value"]:
                best.update(value=logs["val_accuracy"],
                            weights=self.model.get_weights())

    monitor = OverfittingMonitor(stop_on_overfitting=True, patience=3,
                                 restore_best_weights=True, verbose=0)
    history = model.fit(x, y, validation_split=0.5, epochs=100, batch_size=20,
                        callbacks=[KeepBest(), monitor], verbose=0)
    assert len(history.epoch) < 100
    for got, want in zip(model.get_weights(), best["weights"], strict=True):
        np.testing.assert_array_equal(got, want)


def test_missing_metric_lists_the_keys():
    model = classifier(3)
    x, y = np.ones((8, 3)), np.zeros(8)
    with pytest.raises(ValueError, match=r"no 'auc'.*\['accuracy', 'loss'"):
        model.fit(x, y, validation_split=0.5, epochs=1, verbose=0,
                  callbacks=[OverfittingMonitor("auc", verbose=0)])
    with pytest.raises(ValueError, match="needs validation data"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[OverfittingMonitor(verbose=0)])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(metric=3), TypeError, "metric"),
        (dict(mode="maximum"), ValueError, "mode"),
        (dict(overfitting_gap=-0.1), ValueError, "overfitting_gap"),
        (dict(underfitting_value="high"), TypeError, "underfitting_value"),
        (dict(patience=0), ValueError, "patience"),
        (dict(stop_on_overfitting=1), TypeError, "stop_on_overfitting"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}`"):
        OverfittingMonitor(**kwargs)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_validation_metric_name_is_refused():
    # before: accepted, then "found no 'val_val_loss'" after the first epoch
    with pytest.raises(ValueError, match=r"`metric` must be the training"):
        OverfittingMonitor("val_loss")


@pytest.mark.parametrize("log_dir", [5, ""])
def test_log_dir_is_checked_when_built(log_dir):
    with pytest.raises((TypeError, ValueError), match=r"`log_dir` must be"):
        OverfittingMonitor(log_dir=log_dir)


# -- issue 19 ------------------------------------------------------------------


def test_without_validation_it_fails_before_the_first_step():
    # read from fit's own arguments: no epoch is spent first
    model = classifier(3)
    x, y = np.ones((8, 3)), np.zeros(8)
    weights = model.get_weights()
    epochs = []
    counter = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(ValueError, match=r"needs validation data: this `fit` "
                       r"has none.*Pass `validation_data` or "
                       r"`validation_split`.*TrainingDoctor skips"):
        model.fit(x, y, epochs=3, verbose=0,
                  callbacks=[counter, OverfittingMonitor(verbose=0)])
    assert epochs == []
    for got, want in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_outside_fit_an_epoch_without_validation_fails():
    # hooks driven by hand (a custom loop): the epoch logs are all there is
    model = classifier(3)
    monitor = OverfittingMonitor(verbose=0)
    monitor.set_model(model)
    monitor.on_train_begin()
    with pytest.raises(ValueError, match=r"needs validation data: epoch 1 "
                       r"ended without validation.*'accuracy', 'loss'"):
        monitor.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})


def test_epochs_without_validation_after_a_validated_one_are_skipped():
    model = classifier(3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.integers(0, 2, 32)
    monitor = OverfittingMonitor(verbose=0)
    history = model.fit(x, y, validation_split=0.5, validation_freq=[1, 3],
                        epochs=3, verbose=0, callbacks=[monitor])
    train = history.history["accuracy"]
    val = history.history["val_accuracy"]  # epochs 1 and 3
    assert monitor.gaps == pytest.approx([train[0] - val[0],
                                          train[2] - val[1]])


@pytest.mark.parametrize("freq, validated", [(2, [1, 3]), (3, [2]),
                                             ([2, 3], [1, 2])])
def test_validation_freq_measures_the_validated_epochs(freq, validated):
    # epoch 1 is not validated here: it used to fail at its end
    model = classifier(3)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.integers(0, 2, 32)
    monitor = OverfittingMonitor(verbose=0)
    history = model.fit(x, y, validation_split=0.5, validation_freq=freq,
                        epochs=4, verbose=0, callbacks=[monitor])
    train = history.history["accuracy"]
    val = history.history["val_accuracy"]
    assert len(val) == len(validated)
    assert monitor.gaps == pytest.approx(
        [train[e] - v for e, v in zip(validated, val, strict=True)])


def test_a_validation_freq_that_validates_no_epoch_is_warned():
    model = classifier(3)
    x, y = np.ones((8, 3)), np.zeros(8)
    monitor = OverfittingMonitor(verbose=0)
    with pytest.warns(UserWarning, match=r"validation_freq=5 validates none "
                      r"of its epochs \(1 to 3\)"):
        history = model.fit(x, y, validation_split=0.5, validation_freq=5,
                            epochs=3, verbose=0, callbacks=[monitor])
    assert len(history.epoch) == 3 and monitor.gaps == []
    assert monitor.diagnosis == "insufficient_data"
    assert "no epoch of this fit was validated" in monitor.reason


# -- issue 18 ------------------------------------------------------------------


@pytest.mark.slow  # 60 epochs, validated on 797 digits: about 10 s
def test_issue_18_small_data_big_model_is_overfitting_under_the_gap():
    # 80 training digits, 512 hidden units, 60 epochs: train accuracy 1.0,
    # validation ~0.9; the gap may sit under 0.1, the losses tell.
    sklearn = pytest.importorskip("sklearn.datasets")
    data = sklearn.load_digits()
    x, y = (data.data / 16.0).astype("float32"), data.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # a gap threshold the gap stays under: the losses must tell
    monitor = OverfittingMonitor(overfitting_gap=0.3, verbose=0)
    history = model.fit(x[:80], y[:80], validation_data=(x[1000:], y[1000:]),
                        epochs=60, batch_size=16, callbacks=[monitor],
                        verbose=0)
    h = history.history
    assert h["accuracy"][-1] == 1.0
    assert monitor.diagnosis == "overfitting", monitor.reason
    assert monitor.train_losses == pytest.approx(h["loss"])
    assert monitor.val_losses == pytest.approx(h["val_loss"])
    assert h["val_loss"][-1] >= 3 * h["loss"][-1] or (
        h["val_loss"][-1] > 1.1 * min(h["val_loss"]))
    assert monitor.evidence in monitor.reason


def scripted(monitor, rows):
    """Drives the monitor with scripted epoch logs."""
    for epoch, row in enumerate(rows):
        monitor.on_epoch_end(epoch, dict(row))


def test_a_rising_validation_loss_is_overfitting_whatever_the_gap():
    monitor = OverfittingMonitor(verbose=0)
    monitor.set_model(classifier(4))
    monitor.on_train_begin()
    losses = [(1.0, 1.0), (0.5, 0.6), (0.3, 0.62), (0.2, 0.7)]
    scripted(monitor, [{"accuracy": 0.9, "val_accuracy": 0.88,
                        "loss": t, "val_loss": v} for t, v in losses])
    assert monitor.diagnosis == "overfitting"
    # 0.7 / 0.6: 17% above the minimum of epoch 2; 0.2 / 0.5: 60% lower
    assert "rose 17% above its minimum (epoch 2)" in monitor.reason
    assert "training loss fell 60%" in monitor.reason
    # the same rule in other units (x 1000): scale-free (a regression loss,
    # which has no chance level)
    regression = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    regression.compile(optimizer="sgd", loss="mse")
    big = OverfittingMonitor(verbose=0)
    big.set_model(regression)
    big.on_train_begin()
    scripted(big, [{"accuracy": 0.9, "val_accuracy": 0.88,
                    "loss": 1000 * t, "val_loss": 1000 * v}
                   for t, v in losses])
    assert big.diagnosis == "overfitting"
    # a validation loss still falling is no overfitting
    steady = OverfittingMonitor(verbose=0)
    steady.set_model(classifier(4))
    steady.on_train_begin()
    scripted(steady, [{"accuracy": 0.9, "val_accuracy": 0.88,
                       "loss": t, "val_loss": t * 1.1}
                      for t in (1.0, 0.5, 0.3, 0.2)])
    assert steady.diagnosis == "good_fit"


def test_training_at_chance_is_underfitting_whatever_the_gap():
    # PyTorch's report: a linear model on circles, train 0.50 (chance),
    # validation 0.43, a gap of 0.07 between the bands
    monitor = OverfittingMonitor(verbose=0)
    monitor.set_model(classifier(2))  # two classes: chance ln(2), 0.5
    monitor.on_train_begin()
    scripted(monitor, [{"accuracy": 0.50, "val_accuracy": 0.431,
                        "loss": 0.6930, "val_loss": 0.6950}])
    assert monitor.diagnosis == "underfitting"
    assert "no better than chance" in monitor.reason
    # better than chance with the same gap: a good fit, as before
    fine = OverfittingMonitor(verbose=0)
    fine.set_model(classifier(2))
    fine.on_train_begin()
    scripted(fine, [{"accuracy": 0.95, "val_accuracy": 0.881,
                     "loss": 0.15, "val_loss": 0.2}])
    assert fine.diagnosis == "good_fit"
