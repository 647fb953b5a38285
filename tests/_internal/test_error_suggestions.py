"""Every way out that a schedule-optimizer error names must exist (issue 19).

For each public caller that sets the learning rate, the error is triggered
with an optimizer built on a schedule, and every `keras_trainopt.X`,
`keras.a.b.C` and `Name(...).method(...)` in the message is resolved with
getattr on the real packages.
"""

import re

import keras
import numpy as np
import pytest

import keras_trainopt
from keras_trainopt import tuning

_DOTTED = re.compile(r"\b((?:keras_trainopt|keras)(?:\.[A-Za-z_]\w*)+)")
_CALLED = re.compile(r"\b([A-Z]\w*)\([^()]*\)\.([A-Za-z_]\w*)\(")
_ROOTS = {"keras": keras, "keras_trainopt": keras_trainopt}


def _schedule_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model.compile(keras.optimizers.SGD(schedule), loss="mse")
    return model


def _fit_error(callback):
    model = _schedule_model()
    with pytest.raises(TypeError) as info:
        model.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1, batch_size=4,
                  callbacks=[callback], verbose=0)
    return str(info.value)


RATE_SETTERS = {
    "StepDecay": lambda: keras_trainopt.StepDecay(),
    "ExponentialDecay": lambda: keras_trainopt.ExponentialDecay(),
    "InverseTimeDecay": lambda: keras_trainopt.InverseTimeDecay(),
    "SnapshotEnsemble": lambda: keras_trainopt.SnapshotEnsemble(cycles=1),
    "StochasticWeightAveraging": lambda: keras_trainopt.StochasticWeightAveraging(
        start_epoch=0, swa_learning_rate=0.01
    ),
}


def _messages():
    found = {name: _fit_error(make()) for name, make in RATE_SETTERS.items()}
    model = _schedule_model()
    with pytest.raises(TypeError) as info:
        tuning.find_learning_rate(model, np.ones((8, 3)), np.ones((8, 1)),
                                  batch_size=4, steps=2)
    found["find_learning_rate"] = str(info.value)
    return found


def _resolve_dotted(name):
    root, *rest = name.split(".")
    value = _ROOTS[root]
    for part in rest:
        value = getattr(value, part)  # AttributeError: names nothing real
    return value


def test_every_rate_setting_callback_is_covered():
    public = {
        name for name in keras_trainopt.__all__
        if isinstance(getattr(keras_trainopt, name), type)
        and issubclass(getattr(keras_trainopt, name), keras.callbacks.Callback)
        and "learning_rate" in name.lower() + " ".join(
            getattr(keras_trainopt, name).__init__.__code__.co_varnames
        )
    }
    # every public callback with a rate argument sets the rate, except these
    assert public - set(RATE_SETTERS) <= {"LossMonitor", "TrainingDoctor"}


def test_suggestions_in_schedule_errors_exist():
    checked = 0
    for caller, message in _messages().items():
        assert caller in message
        for dotted in _DOTTED.findall(message):
            _resolve_dotted(dotted.rstrip("."))
            checked += 1
        for name, method in _CALLED.findall(message):
            owner = getattr(keras_trainopt, name, None) or getattr(
                keras.optimizers, name
            )
            assert callable(getattr(owner, method, None)), (caller, message)
            checked += 1
    assert checked >= 6


def test_to_schedule_only_offered_where_it_exists():
    messages = _messages()
    for caller in ("StepDecay", "ExponentialDecay", "InverseTimeDecay"):
        assert f"{caller}(...).to_schedule(" in messages[caller]
    for caller in ("SnapshotEnsemble", "StochasticWeightAveraging"):
        assert "to_schedule" not in messages[caller]
    assert "swa_learning_rate=None" in messages["StochasticWeightAveraging"]
    assert "CheckpointEnsemble(...).ensemble()" in messages["SnapshotEnsemble"]


def test_the_regex_catches_a_made_up_name():
    # the check above would fail on the old message's invented method
    name, method = _CALLED.findall("`SnapshotEnsemble(...).to_schedule()`")[0]
    assert not hasattr(getattr(keras_trainopt, name), method)
    with pytest.raises(AttributeError):
        _resolve_dotted("keras_trainopt.NoSuchThing")
