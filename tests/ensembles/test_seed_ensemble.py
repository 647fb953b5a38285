import warnings

import keras
import numpy as np
import pytest

from keras_trainopt import BackupAndRestore
from keras_trainopt import LossMonitor
from keras_trainopt import StepDecay
from keras_trainopt import fit_seed_ensemble

X = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
Y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype("int32")


def build_model():
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    return model


def test_members_are_the_models_each_seed_trains_on_its_own():
    ensemble, histories = fit_seed_ensemble(
        build_model, X, Y, seeds=[3, 7], epochs=2, batch_size=8, verbose=0
    )
    assert len(histories) == 2
    for member, seed in zip(ensemble.members, (3, 7), strict=True):
        keras.utils.set_random_seed(seed)
        alone = build_model()
        alone.fit(X, Y, epochs=2, batch_size=8, verbose=0)
        for a, b in zip(member.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    first, second = (m.get_weights()[0] for m in ensemble.members)
    assert not np.allclose(first, second)  # different seeds, different models
    expected = np.mean([m.predict(X, verbose=0) for m in ensemble.members], 0)
    np.testing.assert_allclose(ensemble.predict(X, verbose=0), expected,
                               rtol=1e-6)


def test_an_int_means_seeds_zero_to_n_minus_one():
    ensemble, _ = fit_seed_ensemble(build_model, X, Y, seeds=3, epochs=1,
                                    verbose=0)
    assert len(ensemble.members) == 3


@pytest.mark.parametrize(
    "seeds, error, text",
    [
        (0, ValueError, "Received: seeds=0"),
        ([1, 1], ValueError, "Received: seeds=[1, 1]"),
        ([1, -2], ValueError, "Received: seeds[1]=-2"),
        ("3", TypeError, "Received: seeds='3'"),
        ([], TypeError, "Received: seeds=[]"),
    ],
)
def test_bad_seeds_are_refused(seeds, error, text):
    with pytest.raises(error) as info:
        fit_seed_ensemble(build_model, X, Y, seeds=seeds)
    assert text in str(info.value)


def test_build_model_must_return_a_compiled_model():
    def uncompiled():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    with pytest.raises(ValueError, match="compiled model"):
        fit_seed_ensemble(uncompiled, X, Y, seeds=1)
    with pytest.raises(TypeError, match="must be a function"):
        fit_seed_ensemble("build", X, Y)


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize(
    "fit_kwargs, error, name",
    [(dict(epochz=1), TypeError, "epochz"), (dict(epochs="x"), TypeError, "epochs"),
     (dict(epochs=1.5), TypeError, "epochs"), (dict(batch_size=-1), ValueError,
                                               "batch_size")],
)
def test_fit_arguments_are_checked_before_training(fit_kwargs, error, name):
    # before: Keras' "fit() got an unexpected keyword argument 'epochz'",
    # "'str' object cannot be interpreted as an integer", "Invalid value in
    # tensor used for shape: -32": none named in backticks
    built = []

    def build_model():
        built.append(1)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    with pytest.raises(error, match=f"`{name}`"):
        fit_seed_ensemble(build_model, np.ones((4, 2)), np.ones((4, 1)),
                          seeds=2, verbose=0, **fit_kwargs)
    assert not built


# -- callbacks per member ------------------------------------------------------


def test_callbacks_as_a_function_of_the_seed_give_each_member_its_own():
    called, made = [], []

    def callbacks(seed):
        called.append(seed)
        made.append(LossMonitor(every=1, verbose=0))
        return [made[-1]]

    ensemble, histories = fit_seed_ensemble(
        build_model, X, Y, seeds=[3, 7], epochs=2, batch_size=8, verbose=0,
        callbacks=callbacks)
    assert called == [3, 7]
    assert len(histories) == 2
    # the reference: each member trained alone, with a monitor of its own
    for member, own, seed in zip(ensemble.members, made, (3, 7), strict=True):
        keras.utils.set_random_seed(seed)
        alone, monitor = build_model(), LossMonitor(every=1, verbose=0)
        alone.fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[monitor])
        for a, b in zip(member.get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        assert own.steps == monitor.steps == list(range(1, 11))  # 2 x 5
        np.testing.assert_allclose(own.losses, monitor.losses, rtol=1e-5)


def test_a_shared_backup_and_restore_is_refused_before_any_member(tmp_path):
    built = []

    def counting_build():
        built.append(1)
        return build_model()

    with pytest.raises(ValueError, match=r"BackupAndRestore in `callbacks` is "
                       r"shared by the 2 members.*lambda seed"):
        fit_seed_ensemble(counting_build, X, Y, seeds=2, verbose=0,
                          callbacks=[BackupAndRestore(tmp_path / "b")])
    assert not built
    # one per member is the way
    fit_seed_ensemble(counting_build, X, Y, seeds=2, epochs=1, verbose=0,
                      callbacks=lambda seed: [
                          BackupAndRestore(tmp_path / f"b{seed}")])
    assert len(built) == 2


def test_a_shared_monitor_is_warned_about_and_a_decay_is_not():
    with pytest.warns(UserWarning, match=r"LossMonitor in `callbacks` is "
                      r"shared by the 2 members.*mixes them"):
        fit_seed_ensemble(build_model, X, Y, seeds=2, epochs=1, verbose=0,
                          callbacks=[LossMonitor(verbose=0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_seed_ensemble(build_model, X, Y, seeds=2, epochs=1, verbose=0,
                          callbacks=[StepDecay(factor=0.5, every=1)])
    assert not [w for w in caught if "shared by" in str(w.message)]
