"""The schedule registry is the only place that knows the schedules."""

import math

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainopt import callbacks
from keras_trainopt.tuning import HyperparameterConfig
from keras_trainopt.tuning import SearchSpace
from keras_trainopt.tuning import schedule_registry
from keras_trainopt.tuning import search_hyperparameters
from keras_trainopt.tuning.schedule_registry import Knob
from keras_trainopt.tuning.schedule_registry import Schedule

# Independent references: what each schedule is, written out by hand.
KNOBS_OF = {
    "step": {"step_factor", "step_every"},
    "exponential": {"exponential_decay"},
    "inverse_time": {"inverse_time_decay"},
    "constant": set(),
}
CALLBACK_OF = {
    "step": callbacks.StepDecay,
    "exponential": callbacks.ExponentialDecay,
    "inverse_time": callbacks.InverseTimeDecay,
}
EXAMPLE = {
    "step": ({"step_factor": 0.5, "step_every": 4},
             "step(factor=0.5, every=4)"),
    "exponential": ({"exponential_decay": 0.3}, "exponential(decay=0.3)"),
    "inverse_time": ({"inverse_time_decay": 0.7}, "inverse_time(decay=0.7)"),
    "constant": ({}, "constant"),
}
GENERAL = {"learning_rate", "l2", "dropout"}


def test_registry_holds_the_four_schedules_in_order():
    assert list(schedule_registry.SCHEDULES) == ["step", "exponential",
                                                 "inverse_time", "constant"]
    for name, schedule in schedule_registry.SCHEDULES.items():
        assert schedule.name == name


def test_every_schedule_name_in_search_space_is_a_registry_key():
    assert set(SearchSpace(epochs=10).schedules) <= set(
        schedule_registry.SCHEDULES)
    for name in KNOBS_OF:
        assert SearchSpace(epochs=10, schedule=name).schedules == (name,)
    with pytest.raises(ValueError) as info:
        SearchSpace(epochs=10, schedule="cosine")
    assert ("'step', 'exponential', 'inverse_time', 'constant'"
            in str(info.value))


@pytest.mark.parametrize("name", sorted(KNOBS_OF))
def test_a_schedule_searches_exactly_its_entrys_knobs(name):
    entry = schedule_registry.SCHEDULES[name]
    assert {knob.name for knob in entry.knobs} == KNOBS_OF[name]
    hp = keras_tuner.HyperParameters()
    SearchSpace(epochs=10, schedule=name).declare(hp)
    assert {p.name for p in hp.space} == GENERAL | KNOBS_OF[name]


@pytest.mark.parametrize("name", sorted(KNOBS_OF))
def test_config_builds_the_entrys_callback_and_text(name):
    values, text = EXAMPLE[name]
    config = HyperparameterConfig({"learning_rate": 0.1, "schedule": name,
                                   **values})
    built = config.callbacks()
    entry = schedule_registry.SCHEDULES[name]
    if name == "constant":
        assert built == [] and entry.callback is None
    else:
        assert entry.callback is CALLBACK_OF[name]
        assert [type(c) for c in built] == [CALLBACK_OF[name]]
        assert built[0].learning_rate(0) == pytest.approx(0.1)
    assert config.describe_schedule() == text


def test_an_unregistered_schedule_name_reads_as_constant():
    config = HyperparameterConfig({"learning_rate": 0.1, "schedule": "bogus"})
    assert config.callbacks() == [] and config.describe_schedule() == "constant"


def test_stretch_functions():
    assert schedule_registry.stretch_period(3, 2.5) == 8  # round(7.5)
    assert schedule_registry.stretch_period(1, 0.1) == 1  # at least 1
    assert schedule_registry.stretch_rate(0.3, 3) == 0.1


# -- a schedule added in one place --------------------------------------------


class Halving(callbacks.StepDecay):
    """Step decay by a fixed half: a schedule with one knob."""

    def __init__(self, initial_learning_rate, every, **kwargs):
        super().__init__(initial_learning_rate, factor=0.5, every=every,
                         **kwargs)


HALVING = Schedule(
    name="halving",
    knobs=(Knob("halving_every", "int", lambda epochs: (1, epochs),
                hard_lower=1, stretch=schedule_registry.stretch_period),),
    template="halving(every={halving_every})",
    callback=Halving,
    arguments={"every": "halving_every"},
    tried_by_default=False,
)


class Rates(keras.callbacks.Callback):
    """The learning rate of each epoch of each fit."""

    runs = []

    def __deepcopy__(self, memo):  # keras-tuner copies callbacks per trial
        return self

    def on_train_begin(self, logs=None):
        Rates.runs.append([])

    def on_epoch_begin(self, epoch, logs=None):
        rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        Rates.runs[-1].append(float(rate))


def build_model(config):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.01), "mse", metrics=["mae"])
    return model


@pytest.mark.slow  # a search: about 30 s
@pytest.mark.filterwarnings("ignore:best .* edge of its range:UserWarning")
def test_a_registry_entry_added_alone_becomes_searchable(monkeypatch,
                                                         tmp_path):
    with pytest.raises(ValueError, match="Unknown search-space knob"):
        SearchSpace(epochs=4, halving_every=(1, 2))
    monkeypatch.setitem(schedule_registry.SCHEDULES, "halving", HALVING)
    assert SearchSpace(epochs=4).schedules == ("step", "exponential",
                                               "inverse_time")
    space = SearchSpace(epochs=4, schedule=["step", "halving"])
    assert space.ranges["halving_every"] == (1, 4)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 2)).astype("float32")
    Rates.runs = []
    result = search_hyperparameters(
        build_model, x, y, validation_data=(x, y), max_trials=3, epochs=4,
        objective="val_loss", coarse_fraction=1.0, callbacks=[Rates()],
        search_space={"schedule": "halving", "learning_rate": (0.01, 0.1),
                      "l2": None, "dropout": None},
        directory=str(tmp_path), seed=0, verbose=0)
    assert len(Rates.runs) == 3
    for row, rates in zip(result.trials, Rates.runs, strict=True):
        assert row["schedule"] == "halving"
        every = row["halving_every"]
        assert 1 <= every <= 4
        expected = [row["learning_rate"] * 0.5 ** math.floor(epoch / every)
                    for epoch in range(4)]
        np.testing.assert_allclose(rates, expected, rtol=1e-6)
    best = result.best
    assert [type(c) for c in best.callbacks()] == [Halving]
    assert f"halving(every={best['halving_every']})" in result.table()
    assert best.stretched(3)["halving_every"] == 3 * best["halving_every"]
