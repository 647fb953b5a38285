"""`callback_state`: the discovery of sibling callbacks, and state encoding.

References: the callbacks handed to Keras' own `CallbackList` and `fit`, in
the order they were listed; JSON as the standard library reads it.
"""

import gc
import json

import keras
import numpy as np
import pytest

import keras_trainopt as kt
from keras_trainopt._internal import callback_state
from tests.callbacks.helpers import tiny_data
from tests.callbacks.helpers import tiny_model


class Saved(callback_state.Restorable, keras.callbacks.Callback):
    """A restorable callback with a trivial state."""

    def __init__(self, label=""):
        super().__init__()
        self.label = label

    def get_state(self):
        return {"label": self.label}

    def set_state(self, state):
        self.label = state["label"]


class Finder(Saved):
    """Records its siblings when training starts, as BackupAndRestore."""

    found = None

    def on_train_begin(self, logs=None):
        self.found = callback_state.siblings(self)


def callback_list(callbacks):
    """Keras' own CallbackList, as `fit` builds one: params set once."""
    return keras.callbacks.CallbackList(
        callbacks, model=tiny_model(), epochs=1, steps=1, verbose=0
    )


def test_siblings_are_the_restorable_callbacks_of_the_same_list_in_order():
    a, b, c = Saved("a"), Saved("b"), Saved("c")
    plain = keras.callbacks.LambdaCallback()  # not restorable
    callback_list([b, plain, a, c])
    assert callback_state.siblings(a) == [b, c]
    assert callback_state.siblings(b) == [a, c]
    assert callback_state.siblings(c) == [b, a]


def test_callbacks_of_another_list_are_not_siblings():
    mine, other = Saved("mine"), Saved("other")
    finder = Saved("finder")
    callback_list([finder, mine])
    callback_list([other])
    assert callback_state.siblings(finder) == [mine]
    assert callback_state.siblings(other) == []


def test_a_callback_with_an_owner_is_saved_by_its_owner_not_found():
    owner, owned, free = Saved("owner"), Saved("owned"), Saved("free")
    owned._state_owner = owner
    finder = Saved()
    callback_list([finder, owner, owned, free])
    assert callback_state.siblings(finder) == [owner, free]


def test_a_new_fit_finds_the_order_of_its_own_list():
    first, second, finder = Saved("1"), Saved("2"), Finder()
    callback_list([first, second, finder])
    callback_list([finder, second, first])  # the next fit, reordered
    assert callback_state.siblings(finder) == [second, first]


def test_discovery_inside_a_real_fit_finds_our_callbacks_only():
    x, y = tiny_data()
    monitor = kt.LossMonitor(every=1, verbose=0)
    decay = kt.StepDecay(0.1, 0.5, 2)
    finder = Finder()
    tiny_model().fit(
        x, y, epochs=1, verbose=0,
        callbacks=[monitor, keras.callbacks.TerminateOnNaN(), finder, decay],
    )
    assert finder.found == [monitor, decay]  # not History, not TerminateOnNaN


def test_a_callback_that_is_gone_is_not_found():
    finder, gone = Saved(), Saved()
    callbacks = callback_list([finder, gone])
    callbacks.callbacks.remove(gone)
    del gone
    gc.collect()
    assert callback_state.siblings(finder) == []


def test_keyed_names_repeats_by_class_in_order():
    a1, b, a2, a3 = Saved(), Finder(), Saved(), Saved()
    assert list(callback_state.keyed([a1, b, a2, a3]).items()) == [
        ("Saved", a1), ("Finder", b), ("Saved_1", a2), ("Saved_2", a3),
    ]


def test_encode_writes_json_and_separate_arrays():
    state = {"a": np.arange(2.0), "b": [np.float32(0.5), (1, "x")], "c": None}
    text, arrays = callback_state.encode(state)
    assert json.loads(text) == {"__dict__": {
        "a": {"__ndarray__": "a0"}, "b": [0.5, [1, "x"]], "c": None,
    }}
    assert list(arrays) == ["a0"]
    np.testing.assert_array_equal(arrays["a0"], [0.0, 1.0])


@pytest.mark.parametrize(
    "state, text",
    [
        ({1: "x"}, r"State dict keys must be strings: \[1\]"),
        ({"a": {1, 2}}, r"Cannot save callback state of type set: \{1, 2\}"),
        ([object], "Cannot save callback state of type type"),
    ],
)
def test_encode_refuses_what_it_cannot_write_back(state, text):
    with pytest.raises(TypeError, match=text):
        callback_state.encode(state)
