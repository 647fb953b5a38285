"""The decay schedules the search tries: one registry entry per schedule.

Every place that depends on a schedule's name reads it here: the knobs the
search samples for it (`SearchSpace`), the text that describes it and the
callback that applies it (`HyperparameterConfig`), how its knobs change when
training is stretched (`HyperparameterConfig.stretched`), and the trials
table (`SearchResult.table`). Adding a schedule is one `SCHEDULES` entry.

>>> from keras_trainopt.tuning import schedule_registry
>>> list(schedule_registry.SCHEDULES)
['step', 'exponential', 'inverse_time', 'constant']
>>> schedule_registry.SCHEDULES["step"].describe(
...     {"step_factor": 0.5, "step_every": 4})
'step(factor=0.5, every=4)'
"""

import dataclasses

from keras_trainopt import callbacks


def stretch_period(value, factor):
    """A period in epochs, `factor` times longer (at least one epoch)."""
    return max(1, round(value * factor))


def stretch_rate(value, factor):
    """A decay constant per epoch, `factor` times smaller (12 digits)."""
    return float(f"{value / factor:.12g}")


@dataclasses.dataclass(frozen=True)
class Knob:
    """One hyperparameter the search samples, and how it is sampled.

    Args:
        name: the key in `SearchSpace` and `HyperparameterConfig`.
        scale: "log" (log-uniform), "linear" (uniform) or "int" (uniform
            over integers).
        default: `default(epochs) -> (low, high)`, the range searched when
            the user names none (decay ranges scale with the run's length).
        bounds: keyword arguments of `validation.check_real` every value
            must pass (`low`, `high`, `low_open`, `high_open`); "int" knobs
            are whole numbers >= 1 instead.
        hard_lower: a lower end no value can pass (a best value there is no
            reason to widen the range), or `None`.
        stretch: `stretch(value, factor)`, the value for a run `factor`
            times longer at the same pace of annealing, or `None` when the
            knob does not depend on the run's length.
    """

    name: str
    scale: str
    default: object
    bounds: dict = dataclasses.field(default_factory=dict)
    hard_lower: object = None
    stretch: object = None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One decay schedule: its knobs, its text and its callback.

    Args:
        name: the value of the `schedule` knob.
        knobs: the `Knob`s sampled only for trials of this schedule.
        template: `str.format` text describing a configuration, with the
            knob names as fields, e.g. "step(factor={step_factor:.3g}, ...)".
        callback: the keras_trainopt callback class that applies the
            schedule, called `callback(learning_rate, **arguments, ...)`;
            `None` for a constant rate.
        arguments: `{callback argument: knob name}`.
        tried_by_default: whether a `SearchSpace` without a `schedule`
            tries it.
    """

    name: str
    knobs: tuple
    template: str
    callback: object = None
    arguments: dict = dataclasses.field(default_factory=dict)
    tried_by_default: bool = True

    def describe(self, values):
        """The schedule as text, from a configuration's `values`."""
        return self.template.format_map(values)

    def build_callback(self, learning_rate, values, **kwargs):
        """The callback starting from `learning_rate`, or `None` if constant."""
        if self.callback is None:
            return None
        arguments = {arg: values[knob] for arg, knob in self.arguments.items()}
        return self.callback(learning_rate, **arguments, **kwargs)


_POSITIVE = dict(low=0.0, low_open=True)

SCHEDULES = {
    "step": Schedule(
        name="step",
        knobs=(
            Knob("step_factor", "linear", lambda epochs: (0.1, 0.9),
                 bounds=dict(low=0.0, high=1.0, low_open=True,
                             high_open=True)),
            Knob("step_every", "int",
                 lambda epochs: (1, max(2, epochs // 2)), hard_lower=1,
                 stretch=stretch_period),
        ),
        template="step(factor={step_factor:.3g}, every={step_every})",
        callback=callbacks.StepDecay,
        arguments={"factor": "step_factor", "every": "step_every"},
    ),
    "exponential": Schedule(
        name="exponential",
        knobs=(
            Knob("exponential_decay", "log",
                 lambda epochs: (0.1 / epochs, 5.0 / epochs),
                 bounds=_POSITIVE, stretch=stretch_rate),
        ),
        template="exponential(decay={exponential_decay:.3g})",
        callback=callbacks.ExponentialDecay,
        arguments={"decay": "exponential_decay"},
    ),
    "inverse_time": Schedule(
        name="inverse_time",
        knobs=(
            Knob("inverse_time_decay", "log",
                 lambda epochs: (0.1 / epochs, 20.0 / epochs),
                 bounds=_POSITIVE, stretch=stretch_rate),
        ),
        template="inverse_time(decay={inverse_time_decay:.3g})",
        callback=callbacks.InverseTimeDecay,
        arguments={"decay": "inverse_time_decay"},
    ),
    "constant": Schedule(name="constant", knobs=(), template="constant",
                         tried_by_default=False),
}


def names():
    """The schedule names, in registry order."""
    return tuple(SCHEDULES)


def default_names():
    """The schedules a `SearchSpace` tries when none are named."""
    return tuple(name for name, schedule in SCHEDULES.items()
                 if schedule.tried_by_default)


def lookup(name):
    """The entry of schedule `name`; a name not registered reads as constant.

    `HyperparameterConfig` reads any schedule it cannot apply as a constant
    rate (no callback, described as "constant"), as it always has.
    """
    return SCHEDULES.get(name) or SCHEDULES["constant"]


def knob_owners():
    """`{knob name: (Knob, schedule name)}` of every schedule's knobs."""
    return {knob.name: (knob, schedule.name)
            for schedule in SCHEDULES.values() for knob in schedule.knobs}
