import keras
import numpy as np
import pytest

from keras_trainopt import EnsembleModel


def classifier(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3, activation="softmax"),
    ])


def two_headed(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="tanh")(inputs)
    return keras.Model(inputs, {"a": keras.layers.Dense(2)(hidden),
                                "b": keras.layers.Dense(1)(hidden)})


X = np.random.default_rng(0).normal(size=(20, 6)).astype("float32")


def test_prediction_is_the_mean_of_the_members(tmp_path):
    members = [classifier(s) for s in range(4)]
    expected = np.mean([m.predict(X, verbose=0) for m in members], axis=0)
    ensemble = EnsembleModel(members)
    np.testing.assert_allclose(ensemble.predict(X, verbose=0), expected,
                               rtol=1e-6)
    path = str(tmp_path / "ensemble.keras")
    ensemble.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    assert isinstance(loaded, EnsembleModel) and len(loaded.members) == 4
    np.testing.assert_allclose(loaded.predict(X, verbose=0), expected,
                               rtol=1e-6)


def test_structured_outputs_are_averaged_leaf_by_leaf(tmp_path):
    members = [two_headed(s) for s in range(3)]
    outputs = [m.predict(X, verbose=0) for m in members]
    ensemble = EnsembleModel(members)
    got = ensemble.predict(X, verbose=0)
    for key in ("a", "b"):
        np.testing.assert_allclose(
            got[key], np.mean([o[key] for o in outputs], axis=0), rtol=1e-6
        )
    path = str(tmp_path / "heads.keras")
    ensemble.save(path)
    again = keras.models.load_model(path).predict(X, verbose=0)
    np.testing.assert_allclose(again["a"], got["a"], rtol=1e-6)


def test_compiled_ensemble_evaluates_like_its_mean_prediction():
    members = [classifier(s) for s in range(3)]
    ensemble = EnsembleModel(members)
    ensemble.compile(loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"])
    y = np.arange(20) % 3
    loss, accuracy = ensemble.evaluate(X, y, verbose=0)
    mean = np.mean([m.predict(X, verbose=0) for m in members], axis=0)
    assert accuracy == pytest.approx(np.mean(mean.argmax(1) == y))
    assert loss == pytest.approx(
        -np.mean(np.log(mean[np.arange(20), y])), rel=1e-5
    )


@pytest.mark.parametrize(
    "models, error, text",
    [
        ([], ValueError, "Received: models=[]"),
        ("model", TypeError, "Received: models='model'"),
        ([classifier(0), "x"], TypeError, "Received: models[1]='x'"),
    ],
)
def test_bad_members_are_refused(models, error, text):
    with pytest.raises(error) as info:
        EnsembleModel(models)
    assert text in str(info.value)


def test_a_single_model_is_not_a_list():
    with pytest.raises(TypeError, match="list of keras.Model"):
        EnsembleModel(classifier(0))


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("inputs, outputs", [(5, 1), (4, 3)])
def test_members_of_other_shapes_are_refused(inputs, outputs):
    # before: accepted; `predict` failed in Keras with an error that named
    # neither `models` nor the member
    first = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs)])
    with pytest.raises(ValueError, match=r"`models` must take the same inputs"):
        EnsembleModel([first, other])
