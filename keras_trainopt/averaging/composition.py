"""Several weight averages on one model: which one the model holds.

An `ExponentialMovingAverage` and a `StochasticWeightAveraging` in one
`callbacks` list compose by one rule: each averages the raw (trained)
weights, never another's average, and wherever an average goes into the
model (validation, `evaluate`, `predict`, train end) the one later in the
list replaces the earlier one instead of being put on top of it. This module
keeps, per model, the averager whose average was put in at train end (it
holds the raw weights) and the averager whose average is swapped in now, so
that the raw weights are held once per model.
"""

import weakref

from keras_trainopt._internal import optimizers

# model -> the averager whose average was put in at train end
_HOLDER = weakref.WeakKeyDictionary()
# model -> the averager whose average is swapped in now
_SWAPPED = weakref.WeakKeyDictionary()

# set on every variable an average attaches to the optimizer
_MARK = "_keras_trainopt_average"


def holder(model):
    """The averager whose average `model` got at train end, or `None`."""
    return _HOLDER.get(model)


def set_holder(model, averager):
    """Records that `averager` put its average into `model`."""
    _HOLDER[model] = averager


def release_holder(model, averager):
    """Forgets `averager` as the holder of `model` (if it is)."""
    if _HOLDER.get(model) is averager:
        del _HOLDER[model]


def swapped(model):
    """The averager whose average is swapped into `model` now, or `None`."""
    return _SWAPPED.get(model)


def set_swapped(model, averager):
    """Records that `averager`'s average is swapped into `model`."""
    _SWAPPED[model] = averager


def release_swapped(model, averager):
    """Forgets `averager` as the one swapped into `model` (if it is)."""
    if _SWAPPED.get(model) is averager:
        del _SWAPPED[model]


def attach(model, variables):
    """Attaches an average's `variables` to `model.optimizer`, marked."""
    for variable in variables:
        setattr(variable, _MARK, True)
    optimizers.attach_state_variables(model.optimizer, variables)


def detach_all(model):
    """Takes every weight average's variables off `model.optimizer`.

    When a `fit` is refused at its start, the averagers earlier in the list
    have attached theirs already and will see no train end.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return
    optimizers.detach_state_variables(optimizer, [
        v for v in optimizers.unwrap(optimizer).variables
        if getattr(v, _MARK, False)
    ])
