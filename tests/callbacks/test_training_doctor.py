import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import TrainingDoctor
from tests import tb
from tests.callbacks.helpers import Net


def regression(learning_rate, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = x @ rng.normal(size=(8, 1)).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), loss="mse")
    return model, x, y


def test_a_diverging_run_gets_learning_rate_advice_in_tensorboard(
    tmp_path, capsys
):
    model, x, y = regression(5.0)
    doctor = TrainingDoctor(str(tmp_path), metric="loss", every=1)
    model.fit(x, y, validation_split=0.25, epochs=10, verbose=0,
              callbacks=[doctor])
    step = doctor.monitors["loss"].diverged_at_step
    assert step is not None
    first = doctor.advice[0]
    assert first.topic == "learning_rate"
    assert first.finding == "learning_rate_too_high"
    assert str(first).startswith(f"learning rate too high: the loss diverged "
                                 f"at step {step}; ")
    assert str(first).endswith("; try about 0.5")  # 5.0 / 10
    # the exploding update ratios are evidence of the same cause
    assert any("update ratio is" in e for e in first.evidence)
    assert str(first) in capsys.readouterr().out
    accumulator = tb.load(str(tmp_path / "monitors"))
    (event,) = accumulator.Tensors("doctor/advice")
    text = tb.tensor_util.make_ndarray(event.tensor_proto).item().decode()
    assert str(first) in text


def classifier(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, x, y


def test_saturated_tanh_layer_is_named():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="tanh", name="squashed",
                           kernel_initializer=keras.initializers.RandomNormal(
                               stddev=10.0)),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.SGD(1e-4), loss="mse")
    doctor = TrainingDoctor(x_probe=x[:64], metric="loss", verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=2, verbose=0,
              callbacks=[doctor])
    squashed = [a for a in doctor.advice if "squashed" in str(a)]
    assert squashed and "saturated" in str(squashed[0])
    saturated = doctor.monitors["activations"].stats["squashed"][
        "saturated_fraction"
    ]
    assert f"{saturated:.0%} saturated" in str(squashed[0])


def test_overfitting_from_epoch_logs():
    model, x, y = classifier()
    doctor = TrainingDoctor(verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=1, verbose=0,
              callbacks=[doctor])  # wires the monitors to the model
    doctor.on_train_begin()
    for epoch, (train, val) in enumerate([(0.80, 0.78), (0.90, 0.84),
                                          (0.97, 0.80), (0.99, 0.70)]):
        doctor.on_epoch_end(epoch, {"accuracy": train, "val_accuracy": val})
    doctor.on_train_end()
    fit = [a for a in doctor.advice if a.topic == "fit"]
    assert fit and str(fit[0]).startswith(
        "strong overfitting: gap 0.29 at epoch 4")


def test_a_healthy_run_has_no_rate_or_fit_problem():
    model, x, y = classifier()
    doctor = TrainingDoctor(verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=5, verbose=0,
              callbacks=[doctor])
    assert doctor.monitors["fit"].diagnosis == "good_fit"
    topics = {a.topic for a in doctor.advice}
    assert "learning_rate" not in topics and "fit" not in topics


def test_the_gap_reaches_history_and_ratios_follow_their_own_period():
    model, x, y = classifier()
    doctor = TrainingDoctor(update_ratio_every=2, verbose=0)
    history = model.fit(x, y, validation_split=0.25, epochs=3, batch_size=32,
                        verbose=0, callbacks=[doctor])
    gaps = [train - val for train, val in zip(history.history["accuracy"],
                                              history.history["val_accuracy"],
                                              strict=True)]
    np.testing.assert_allclose(history.history["generalization_gap"], gaps,
                               atol=1e-6)
    assert doctor.monitors["update_ratio"].every == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: every=0"):
        TrainingDoctor(every=0)
    with pytest.raises(ValueError, match="Received: verbose=-1"):
        TrainingDoctor(verbose=-1)
    with pytest.raises(ValueError, match="Received: update_ratio_every=0"):
        TrainingDoctor(update_ratio_every=0)
    with pytest.raises(ValueError, match=r"`probe_overhead`.*=1\.5"):
        TrainingDoctor(probe_overhead=1.5)
    with pytest.raises(TypeError, match="`probe_overhead`"):
        TrainingDoctor(probe_overhead="1%")


@pytest.mark.parametrize("probe_overhead, epochs", [
    (1e-6, [0, 5]),  # one probe in a quarter of an hour: the first, the last
    (None, [0, 1, 2, 3, 4, 5]),
])
def test_probe_overhead_bounds_the_activation_probes(tmp_path, probe_overhead,
                                                     epochs):
    # The doctor's probe before the first update traces the probe model;
    # epoch 0's is the first one timed.
    model, x, y = classifier()
    doctor = TrainingDoctor(str(tmp_path), x_probe=x[:32],
                            probe_overhead=probe_overhead, verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=6, verbose=0,
              callbacks=[doctor])
    assert doctor.monitors["activations"].max_overhead == probe_overhead
    run = str(tmp_path / "monitors")
    means = [tag for tag in tb.tags(run)
             if tag.startswith("activations/") and tag.endswith("/mean")]
    assert len(means) == 2  # the two Dense layers
    for tag in means:
        assert [step for step, _ in tb.scalars(run, tag)] == epochs


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_errors_name_the_doctors_own_arguments():
    # before: the monitors' checks named their own arguments: `every` for
    # update_ratio_every, `x` for x_probe
    with pytest.raises(ValueError, match=r"`update_ratio_every` must be >= 1"):
        TrainingDoctor(update_ratio_every=0)
    with pytest.raises(TypeError, match=r"`x_probe` must be a batch"):
        TrainingDoctor(x_probe="abc")
    with pytest.raises(ValueError, match=r"`log_dir` must be a non-empty"):
        TrainingDoctor(log_dir="")


# -- issue 19 ------------------------------------------------------------------


def test_without_validation_the_gap_is_skipped_and_said_so(capsys):
    model, x, y = classifier()
    doctor = TrainingDoctor(every=1, verbose=1)
    with pytest.warns(UserWarning, match="gap is not checked") as caught:
        history = model.fit(x, y, epochs=3, batch_size=128, verbose=0,
                            callbacks=[doctor])
    assert len([w for w in caught if "TrainingDoctor" in str(w.message)]) == 1
    assert len(history.history["loss"]) == 3  # the fit ran to its end
    assert "generalization_gap" not in history.history
    assert doctor.monitors["fit"].gaps == []
    # the other monitors kept working
    assert doctor.monitors["loss"].steps == list(range(1, 13))  # 3 x 4
    assert doctor.monitors["update_ratio"].layer_ratios
    fit_advice = [str(a) for a in doctor.advice if a.topic == "fit"]
    assert fit_advice == [
        "the train/validation gap was not checked: fit had no validation "
        "data; pass validation_data or validation_split to fit to have it "
        "checked"]
    assert not any("the gap" in str(a) and a.topic == "overall"
                   for a in doctor.advice)
    assert "gap was not checked" in capsys.readouterr().out
    # a later fit with validation checks it again
    history = model.fit(x, y, validation_split=0.25, epochs=1, verbose=0,
                        callbacks=[doctor])
    assert doctor.monitors["fit"].gaps == pytest.approx(
        [history.history["accuracy"][0] - history.history["val_accuracy"][0]])
    assert not any("not checked" in str(a) for a in doctor.advice)


def test_validation_every_other_epoch_checks_those_epochs():
    model, x, y = classifier()
    doctor = TrainingDoctor(verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, validation_split=0.25, validation_freq=2,
                            epochs=4, verbose=0, callbacks=[doctor])
    # epoch 1 has no validation by design: no "no validation data" warning
    assert not [w for w in caught if "TrainingDoctor" in str(w.message)]
    train = history.history["accuracy"]
    val = history.history["val_accuracy"]  # epochs 2 and 4
    assert doctor.monitors["fit"].gaps == pytest.approx(
        [train[1] - val[0], train[3] - val[1]])
    assert not any("not checked" in str(a) for a in doctor.advice)


def test_a_validation_freq_that_validates_no_epoch_is_said():
    model, x, y = classifier()
    doctor = TrainingDoctor(verbose=0)
    model.fit(x, y, validation_split=0.25, validation_freq=5, epochs=2,
              verbose=0, callbacks=[doctor])
    assert doctor.monitors["fit"].gaps == []
    assert [str(a) for a in doctor.advice if a.topic == "fit"] == [
        "the train/validation gap was not checked: no epoch of this fit was "
        "validated (validation_freq=5)"]


def test_x_probe_on_a_nested_backbone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    inner_in = keras.Input((8,))
    inner = keras.Model(
        inner_in, keras.layers.Dense(6, activation="tanh", name="t")(inner_in),
        name="backbone")
    model = keras.Sequential([keras.Input((8,)), inner,
                              keras.layers.Dense(1, name="head")])
    model.compile("sgd", "mse")
    doctor = TrainingDoctor(x_probe=x, metric="loss", verbose=0)
    model.fit(x, y, validation_split=0.25, epochs=1, verbose=0,
              callbacks=[doctor])
    stats = doctor.monitors["activations"].stats
    assert sorted(stats) == ["backbone", "backbone/t", "head"]
    kernel, bias = inner.get_layer("t").get_weights()
    assert stats["backbone/t"]["mean"] == pytest.approx(
        np.tanh(x @ kernel + bias).mean(), abs=1e-5)


def test_a_subclassed_model_with_x_probe_fails_at_train_begin():
    model, x, y = regression(0.01)
    net = Net()
    net(x[:1])  # built (an unbuilt one has no weights for UpdateRatioLogger)
    net.compile("sgd", "mse")
    steps = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: steps.append(batch))
    with pytest.raises(ValueError, match=r"cannot probe Net: it is a "
                       r"subclassed model.*probe_model="):
        net.fit(x, y, epochs=1, verbose=0,
                callbacks=[TrainingDoctor(x_probe=x, verbose=0), counter])
    assert steps == []  # before the first step


def test_probe_model_needs_x_probe():
    with pytest.raises(ValueError, match=r"`probe_model`.*x_probe"):
        TrainingDoctor(probe_model=keras.Sequential([keras.Input((2,))]))


def test_probe_model_is_checked_under_its_own_name():
    with pytest.raises(TypeError, match=r"`probe_model` must be .*"
                       r"Received: probe_model=3"):
        TrainingDoctor(x_probe=np.ones((2, 2)), probe_model=3)


def test_a_layer_scale_starting_near_zero_is_not_a_rate_problem():
    # ConvNeXt's LayerScale (gamma = 1e-6 at the start) moves by 1e3 of
    # itself per Adam step at any usual rate; the doctor judged the rate
    # by it ("scale's update ratio is 1.0e+03 ... try about 1e-4")
    from tests.callbacks.test_update_ratio_logger import data
    from tests.callbacks.test_update_ratio_logger import scaled_model

    x, y = data()
    net = scaled_model()
    doctor = TrainingDoctor(metric="loss", every=1, update_ratio_every=1,
                            verbose=0)
    net.fit(x, y, batch_size=72, epochs=1, verbose=0, validation_split=0.25,
            callbacks=[doctor])  # one update: gamma is still about 1e-3
    logger = doctor.monitors["update_ratio"]
    assert logger.layer_ratios["scale"] > 100  # logged as it is
    assert "learning_rate_too_high" not in {a.finding for a in doctor.advice}
    assert all(1e-4 <= r <= 1e-2 for r in logger.judged_ratios.values())


@pytest.mark.slow  # ConvNeXtTiny built and trained one step: about 30 s
def test_convnext_layer_scales_are_logged_not_judged():
    keras.utils.set_random_seed(0)
    net = keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(32, 32, 3), classes=3)
    net.compile(keras.optimizers.AdamW(1e-4), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    doctor = TrainingDoctor(metric="loss", update_ratio_every=1, verbose=0)
    net.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y),
            callbacks=[doctor])
    logger = doctor.monitors["update_ratio"]
    # the reference: Keras' layers by class, nested models (the stem and
    # the downsampling blocks are Sequential models) walked into
    def walk(model):
        for layer in model.layers:
            yield from walk(layer) if hasattr(layer, "layers") else [layer]

    layers = list(walk(net))
    scales = {layer.name for layer in layers
              if type(layer).__name__ == "LayerScale"}
    norms = {layer.name for layer in layers
             if isinstance(layer, keras.layers.LayerNormalization)}
    assert len(scales) == 18 and norms
    assert set(logger.unjudged_layers) == scales | norms
    assert min(logger.layer_ratios[name] for name in scales) > 10
    assert "learning_rate_too_high" not in {a.finding for a in doctor.advice}
