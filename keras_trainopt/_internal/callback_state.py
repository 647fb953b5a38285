"""Callback state that `keras_trainopt.BackupAndRestore` saves and restores.

A callback whose Python-side state must survive a restart (a monitor's
history, a decay's resolved initial rate, a list of snapshots) derives from
`Restorable` and implements `get_state()` / `set_state(state)`. State that
lives in variables of the optimizer (the running averages of
`ExponentialMovingAverage` and `StochasticWeightAveraging`) is not restorable
this way: `model.save_weights` already holds it.

`BackupAndRestore` finds the restorable callbacks of its own `fit` without
being told: Keras hands every callback of one `fit` the very same `params`
dict (`CallbackList.set_params`), so the callbacks that hold
`BackupAndRestore`'s `params` object are its siblings, in the order of the
`callbacks` list. A callback driven by another one (the monitors inside
`TrainingDoctor`) has an owner and is saved as part of the owner's state.
A backup taken in the middle of an epoch also holds each callback's
`get_epoch_state()`: what it keeps from one step of the epoch to the next.

States are nested dicts, lists, strings, numbers, `None` and NumPy arrays;
`encode` turns one into JSON text plus a dict of arrays (for one `.npz`
file) and `decode` turns them back.
"""

import itertools
import json
import weakref

import numpy as np

_ORDER = itertools.count()
_LIVE = weakref.WeakSet()


class Restorable:
    """Mixin for a `keras.callbacks.Callback` with `get_state`/`set_state`."""

    _state_owner = None  # the callback that saves this one's state, if any
    _registration = -1

    def set_params(self, params):
        super().set_params(params)
        self._registration = next(_ORDER)
        _LIVE.add(self)

    def get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError

    def finish_step_boundary(self):
        """Does now what this callback's next batch hook would do first.

        A backup in the middle of an epoch is taken at a step boundary
        before any other callback's `on_train_batch_begin` runs (a SIGTERM
        ends the process right after it). A callback whose batch hook acts
        on the steps just run (`SnapshotEnsemble` snapshots a cycle that
        ended) does that here, so the backup holds it.
        """

    def get_epoch_state(self):
        """The state of the epoch in progress, for a mid-epoch backup.

        What `on_epoch_begin` and the batch hooks keep between steps of
        one epoch (a reading's starting point, the step where the epoch
        began), beyond `get_state`. `BackupAndRestore` saves it in the
        middle of an epoch and hands it to `set_epoch_state` once the
        resumed epoch has begun (after this callback's `on_epoch_begin`).
        """
        return {}

    def set_epoch_state(self, state):
        """Puts back what `get_epoch_state` returned (see there)."""


def siblings(callback):
    """The restorable callbacks in the same `fit` as `callback`, in order."""
    params = getattr(callback, "params", None)
    found = [
        other
        for other in list(_LIVE)
        if other is not callback
        and other._state_owner is None
        and getattr(other, "params", None) is params
    ]
    return sorted(found, key=lambda other: other._registration)


def keyed(callbacks):
    """`{name: callback}`: class name, then `_1`, `_2`... for repeats."""
    counts, named = {}, {}
    for callback in callbacks:
        name = type(callback).__name__
        number = counts.get(name, 0)
        counts[name] = number + 1
        named[name if number == 0 else f"{name}_{number}"] = callback
    return named


# -- serialization -------------------------------------------------------------


def encode(state):
    """`(json_text, arrays)` for a nested state with NumPy arrays in it."""
    arrays = {}

    def walk(value):
        if isinstance(value, np.ndarray):
            name = f"a{len(arrays)}"
            arrays[name] = value
            return {"__ndarray__": name}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                raise TypeError(f"State dict keys must be strings: {list(value)}")
            return {"__dict__": {key: walk(item) for key, item in value.items()}}
        if isinstance(value, (list, tuple)):
            return [walk(item) for item in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(
            f"Cannot save callback state of type {type(value).__name__}: "
            f"{value!r}"
        )

    return json.dumps(walk(state), allow_nan=True), arrays


def decode(text, arrays):
    """The inverse of `encode`."""

    def walk(value):
        if isinstance(value, dict):
            if "__ndarray__" in value:
                return np.array(arrays[value["__ndarray__"]])
            return {key: walk(item) for key, item in value["__dict__"].items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(json.loads(text))
