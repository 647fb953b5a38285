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


class _Slot:
    """One averager per model, held weakly (a model's end frees it)."""

    def __init__(self):
        self._by_model = weakref.WeakKeyDictionary()

    def get(self, model):
        """The averager in this slot for `model`, or `None`."""
        return self._by_model.get(model)

    def set(self, model, averager):
        """Puts `averager` in this slot for `model`."""
        self._by_model[model] = averager

    def release(self, model, averager):
        """Empties the slot of `model` if `averager` holds it."""
        if self._by_model.get(model) is averager:
            del self._by_model[model]


# the averager whose average was put into the model at train end (it holds
# the raw weights), and the one whose average is swapped in now
HOLDER = _Slot()
SWAPPED = _Slot()

# set on every variable an average attaches to the optimizer
_MARK = "_keras_trainopt_average"


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
