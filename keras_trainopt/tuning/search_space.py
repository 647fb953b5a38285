"""The space `search_hyperparameters` samples: the practice's three knobs.

The knobs are the initial learning rate, the decay schedule with its
parameters, and the regularization strength (L2 and dropout). Every method
here is pure (no training), so the coarse-to-fine logic can be tested and
reasoned about on its own:

- `declare(hp)` registers the knobs with a keras-tuner `HyperParameters`
  (schedule parameters as conditional hyperparameters of `schedule`) and
  returns the full configuration;
- `narrow(values, zoom)` is the space of the fine stage: every range shrunk
  to `zoom` of its width (in log space for log-scaled knobs) around the best
  coarse value, the schedule fixed to the best one;
- `edge_warnings(values)` says which best values sit at the edge of their
  range, where the true optimum may lie outside it.

The schedules and their own knobs come from `schedule_registry`; this module
adds the knobs every trial has (learning rate, L2, dropout).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import Union

from keras_trainopt._internal import validation
from keras_trainopt.tuning import schedule_registry
from keras_trainopt.tuning.schedule_registry import Knob

if TYPE_CHECKING:  # keras-tuner is imported only where a search runs
    import keras_tuner

# What a knob of `SearchSpace` takes: a `(low, high)` range, a single value,
# `None` to leave it out, or for `schedule` a name or a list of names.
KnobSpec = Union[
    float, tuple[float, float], list[float], str, Sequence[str], None
]

# The knobs every trial has, whatever its schedule.
_LEARNING_RATE = Knob("learning_rate", "log", lambda epochs: (1e-4, 1.0),
                      bounds=dict(low=0.0, low_open=True))
_REGULARIZATION = (
    Knob("l2", "log", lambda epochs: (1e-6, 1e-2), bounds=dict(low=0.0)),
    Knob("dropout", "linear", lambda epochs: (0.0, 0.5),
         bounds=dict(low=0.0, high=1.0, high_open=True), hard_lower=0.0),
)


def knob_table() -> dict[str, tuple[Knob, str | None]]:
    """`{name: (Knob, schedule it belongs to or None)}`, in declaring order.

    The learning rate, then each registered schedule's knobs, then the
    regularization: the order in which trials sample them, so the same
    seed samples the same trials.
    """
    table: dict[str, tuple[Knob, str | None]] = {
        _LEARNING_RATE.name: (_LEARNING_RATE, None)
    }
    table.update(schedule_registry.knob_owners())
    table.update((knob.name, (knob, None)) for knob in _REGULARIZATION)
    return table


def knob_scale(name: str) -> str:
    """The sampling scale of knob `name`: "log", "linear" or "int"."""
    return knob_table()[name][0].scale


def default_knobs(epochs: int) -> dict[str, Any]:
    """The default ranges, the decay ones scaled to a run of `epochs` epochs.

    Over the run, exponential decay ends between 0.9x and 0.007x of the
    initial rate (`exp(-0.1)` to `exp(-5)`), 1/t decay between 0.9x and
    0.05x, and step decay drops every 1 to `epochs // 2` epochs.
    """
    epochs = validation.check_int("epochs", epochs, low=1)
    table = knob_table()
    specs = {name: knob.default(epochs) for name, (knob, _) in table.items()}
    # This order is that of `SearchSpace.ranges`, in which trials declare
    # and sample the knobs: the same seed samples the same trials.
    return {"learning_rate": specs.pop("learning_rate"),
            "schedule": schedule_registry.default_names(), **specs}


class SearchSpace:
    """The hyperparameters a search samples, with their ranges.

    Give each knob a `(low, high)` range to search it, a single value to fix
    it, or `None` to leave it out (the model then gets `None` for it, e.g. no
    dropout). `schedule` takes the names of the decay schedules to try:
    "step", "exponential", "inverse_time" (1/t) and "constant"; each
    schedule's parameters are only sampled for trials that use it. Knobs
    not named keep their defaults (`default_knobs(epochs)`).

    >>> from keras_trainopt.tuning import SearchSpace
    >>> space = SearchSpace(epochs=20, learning_rate=(1e-3, 1e-1),
    ...                     schedule="step", dropout=None)
    >>> space.ranges["learning_rate"]
    (0.001, 0.1)
    >>> space.ranges["step_every"], space.fixed["schedule"], space.off
    ((1, 10), 'step', ('dropout',))

    Args:
        epochs: the training epochs of one trial; sets the default ranges of
            the decay parameters.
        **knobs: `learning_rate`, `schedule`, `step_factor`, `step_every`,
            `exponential_decay`, `inverse_time_decay`, `l2`, `dropout`.

    Reference: J. Bergstra and Y. Bengio, "Random Search for Hyper-Parameter
    Optimization", JMLR 2012 (random beats grid search, search log scales).
    """

    def __init__(self, epochs: int = 10, **knobs: KnobSpec) -> None:
        specs = default_knobs(epochs)
        for name in knobs:
            if name not in specs:
                raise ValueError(
                    f"Unknown search-space knob `{name}`. Expected one of: "
                    f"{', '.join(specs)}. Received: {name}={knobs[name]!r}"
                )
        specs.update(knobs)
        self.epochs = epochs
        self.ranges: dict[str, tuple[float, float]] = {}
        self.fixed: dict[str, Any] = {}
        off = []
        self.schedules = _check_schedules(specs.pop("schedule"))
        if len(self.schedules) == 1:
            self.fixed["schedule"] = self.schedules[0]
        for name, spec in specs.items():
            if spec is None:
                if name == "learning_rate":
                    raise ValueError(
                        "`learning_rate` cannot be left out of the search: "
                        "give a range or a value. Received: learning_rate=None"
                    )
                off.append(name)
            elif isinstance(spec, (tuple, list)):
                self.ranges[name] = _check_range(name, spec)
            else:
                self.fixed[name] = _check_value(name, spec)
        self.off = tuple(off)

    @property
    def is_empty(self) -> bool:
        """True when nothing varies: every knob fixed or off, one schedule."""
        return not self._searched_ranges() and len(self.schedules) == 1

    def _searched_ranges(self) -> dict[str, tuple[float, float]]:
        """The ranges that can matter, given the schedules tried."""
        return {
            name: bounds
            for name, bounds in self.ranges.items()
            if _active(name, self.schedules)
        }

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Registers the knobs with keras-tuner's `hp`; returns the configuration.

        The returned dict has every knob: the sampled or fixed value, or
        `None` for a knob that is off or belongs to another schedule.
        """
        if len(self.schedules) > 1:
            schedule = hp.Choice("schedule", list(self.schedules))
        else:
            schedule = self.schedules[0]
        sampled = {}
        table = knob_table()
        for name, bounds in self.ranges.items():
            owner = table[name][1]
            if owner is None:
                sampled[name] = _declare_range(hp, name, bounds)
            elif owner in self.schedules:
                if len(self.schedules) == 1:
                    sampled[name] = _declare_range(hp, name, bounds)
                else:
                    with hp.conditional_scope("schedule", [owner]):
                        sampled[name] = _declare_range(hp, name, bounds)
        sampled["schedule"] = schedule
        return self.values(sampled)

    def values(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The full configuration from keras-tuner's sampled `values`.

        Fixed knobs are filled in, knobs that are off or belong to a schedule
        other than the chosen one are `None`.
        """
        schedule = sampled.get("schedule", self.schedules[0])
        result = {"schedule": schedule}
        for name, (_, owner) in knob_table().items():
            if owner is not None and owner != schedule:
                result[name] = None
            elif name in self.fixed:
                result[name] = self.fixed[name]
            else:
                result[name] = sampled.get(name)
        return result

    def narrow(self, values: Mapping[str, Any], zoom: float = 0.25) -> SearchSpace:
        """The fine-stage space around the best coarse configuration `values`.

        Each range shrinks to `zoom` of its width (of its log width for
        log-scaled knobs), centred on the best value and shifted to stay
        inside the original range; the schedule is fixed to the best one.
        Knobs the best configuration did not use keep their ranges.
        """
        zoom = validation.check_real("zoom", zoom, low=0.0, high=1.0,
                                     low_open=True)
        knobs = {"schedule": values["schedule"]}
        for name in self.off:
            knobs[name] = None
        knobs.update(self.fixed)
        knobs["schedule"] = values["schedule"]
        for name, (low, high) in self.ranges.items():
            value = values.get(name)
            knobs[name] = (
                (low, high) if value is None
                else zoom_range(low, high, value, zoom, knob_scale(name))
            )
        return SearchSpace(self.epochs, **knobs)

    def edge_warnings(
        self, values: Mapping[str, Any], fraction: float = 0.1
    ) -> list[str]:
        """Sentences naming the best values that sit at the edge of a range.

        A value is at the edge when it lies in the outer `fraction` of its
        range (of its log range for log-scaled knobs): the optimum may lie
        beyond, so the range should be widened and the search run again.
        Ends that cannot be passed (dropout 0, a step every epoch) are no
        edge.
        """
        fraction = validation.check_real("edge_fraction", fraction, low=0.0,
                                         high=0.5, low_open=True)
        warnings = []
        table = knob_table()
        for name, (low, high) in self._searched_ranges().items():
            value = values.get(name)
            if value is None:
                continue
            knob = table[name][0]
            position = relative_position(low, high, value, knob.scale)
            if position <= fraction:
                if knob.hard_lower == low:
                    continue
                side = "lower"
            elif position >= 1.0 - fraction:
                side = "upper"
            else:
                continue
            warnings.append(
                f"best {name}={value:.3g} is at the {side} edge of its range "
                f"[{low:g}, {high:g}]: the optimum may lie beyond it; widen "
                "the range and search again"
            )
        return warnings

    def hparams_domains(self) -> dict[str, Any]:
        """`{knob: tensorboard Domain}` for TensorBoard's HParams dashboard."""
        from keras_trainopt.reporting import hparams

        ranges = self._searched_ranges()
        return hparams.domains(
            choices=({"schedule": self.schedules} if len(self.schedules) > 1
                     else None),
            ranges=ranges,
            fixed=self.fixed,
            integers={name for name in ranges if knob_scale(name) == "int"},
        )

    def __repr__(self) -> str:
        parts = [f"schedule={self.schedules!r}"]
        parts += [f"{name}=({low:.4g}, {high:.4g})" for name, (low, high)
                  in self._searched_ranges().items()]
        parts += [f"{name}={value!r}" for name, value in self.fixed.items()
                  if name != "schedule"]
        parts += [f"{name}=None" for name in self.off]
        return f"SearchSpace({', '.join(parts)})"


def relative_position(low: float, high: float, value: float, scale: str) -> float:
    """Where `value` sits in `[low, high]`, 0 to 1 (log space for "log")."""
    if scale == "log":
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)


def zoom_range(
    low: float, high: float, value: float, zoom: float, scale: str
) -> tuple[float, float]:
    """A sub-range of `[low, high]`, `zoom` of its width, centred on `value`.

    The window is shifted, not cut, where it would leave `[low, high]`, so it
    always keeps `zoom` of the width. Integer ranges keep at least 2 values.

    >>> from keras_trainopt.tuning.search_space import zoom_range
    >>> zoom_range(1e-4, 1.0, 1e-2, 0.5, "log")  # 4 decades -> 2 around 1e-2
    (0.001, 0.1)
    >>> zoom_range(0.0, 0.5, 0.45, 0.2, "linear")  # shifted to stay inside
    (0.4, 0.5)
    """
    if scale == "int":
        width: float = max(1, round(zoom * (high - low)))
        start = min(max(round(value - width / 2), low), high - width)
        return (int(start), int(start + width))
    if scale == "log":
        lo, hi, centre = math.log(low), math.log(high), math.log(value)
    else:
        lo, hi, centre = low, high, value
    width = zoom * (hi - lo)
    start = min(max(centre - width / 2, lo), hi - width)
    end = start + width
    if scale == "log":
        return (_tidy(math.exp(start)), _tidy(math.exp(end)))
    return (_tidy(start), _tidy(end))


def _tidy(value: float) -> float:
    """Rounds away float noise (12 significant digits)."""
    return float(f"{value:.12g}")


def _active(name, schedules):
    owner = knob_table()[name][1]
    return owner is None or owner in schedules


def _declare_range(hp, name, bounds):
    low, high = bounds
    sampling = knob_scale(name)
    if sampling == "int":
        return hp.Int(name, int(low), int(high))
    return hp.Float(name, float(low), float(high), sampling=sampling)


def _check_schedules(spec):
    names = (spec,) if isinstance(spec, str) else spec
    if not isinstance(names, (tuple, list)) or not names:
        raise ValueError(
            "`schedule` must be a schedule name or a non-empty list of them "
            f"({', '.join(schedule_registry.names())}). "
            f"Received: schedule={spec!r}"
        )
    for name in names:
        validation.check_choice("schedule", name, schedule_registry.names())
    if len(set(names)) != len(names):
        raise ValueError(
            f"`schedule` lists a schedule twice. Received: schedule={spec!r}"
        )
    return tuple(names)


def _check_value(name, value):
    knob = knob_table()[name][0]
    if knob.scale == "int":
        return validation.check_int(name, value, low=1)
    return validation.check_real(name, value, **knob.bounds)


def _check_range(name, spec):
    if len(spec) != 2 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in spec
    ):
        raise TypeError(
            f"`{name}` must be a (low, high) pair of numbers, a single value "
            f"or None. Received: {name}={spec!r}"
        )
    low, high = (_check_value(name, v) for v in spec)
    if not low < high:
        raise ValueError(
            f"`{name}` range must have low < high. Received: {name}={spec!r}"
        )
    if knob_scale(name) == "log" and low <= 0:
        raise ValueError(
            f"`{name}` is searched on a log scale, so its range must be "
            f"positive. Received: {name}={spec!r}"
        )
    return (low, high)
