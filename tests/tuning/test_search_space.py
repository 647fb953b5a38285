import math

import keras_tuner
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_trainopt.tuning import SearchSpace
from keras_trainopt.tuning.search_space import default_knobs
from keras_trainopt.tuning.search_space import relative_position
from keras_trainopt.tuning.search_space import zoom_range


def test_defaults_follow_the_practice_and_scale_decay_to_the_run():
    space = SearchSpace(epochs=20)
    assert space.schedules == ("step", "exponential", "inverse_time")
    assert space.ranges["learning_rate"] == (1e-4, 1.0)
    assert space.ranges["l2"] == (1e-6, 1e-2)
    assert space.ranges["dropout"] == (0.0, 0.5)
    assert space.ranges["step_every"] == (1, 10)
    # over 20 epochs exp decay ends between exp(-0.1) and exp(-5) of lr0
    low, high = space.ranges["exponential_decay"]
    assert math.exp(-low * 20) == pytest.approx(math.exp(-0.1))
    assert math.exp(-high * 20) == pytest.approx(math.exp(-5))
    low, high = space.ranges["inverse_time_decay"]
    assert 1 / (1 + high * 20) == pytest.approx(1 / 21)


def test_knobs_keep_their_order_which_sets_the_sampling_sequence():
    assert list(default_knobs(10)) == [
        "learning_rate", "schedule", "step_factor", "step_every",
        "exponential_decay", "inverse_time_decay", "l2", "dropout"]
    assert list(SearchSpace(epochs=10).ranges) == [
        "learning_rate", "step_factor", "step_every", "exponential_decay",
        "inverse_time_decay", "l2", "dropout"]


def test_a_knob_can_be_ranged_fixed_or_left_out():
    space = SearchSpace(epochs=10, learning_rate=(1e-3, 1e-1), l2=1e-4,
                        dropout=None, schedule=["exponential"])
    assert space.ranges["learning_rate"] == (1e-3, 1e-1)
    assert space.fixed == {"schedule": "exponential", "l2": 1e-4}
    assert space.off == ("dropout",)


@pytest.mark.parametrize(
    "knobs, error, words",
    [
        ({"momentum": (0.5, 0.9)}, ValueError, "`momentum`"),
        ({"learning_rate": None}, ValueError, "learning_rate=None"),
        ({"learning_rate": (0.1, 0.01)}, ValueError, "low < high"),
        ({"learning_rate": (0.0, 0.1)}, ValueError, "learning_rate"),
        ({"l2": (0.0, 1e-2)}, ValueError, "log scale"),
        ({"dropout": (0.0, 1.5)}, ValueError, "dropout=1.5"),
        ({"step_factor": 1.0}, ValueError, "step_factor=1"),
        ({"step_every": (0.5, 3)}, TypeError, "step_every=0.5"),
        ({"learning_rate": (0.1, 0.2, 0.3)}, TypeError, "(low, high)"),
        ({"learning_rate": (True, 0.2)}, TypeError, "(low, high)"),
        ({"schedule": []}, ValueError, "schedule=[]"),
        ({"schedule": "cosine"}, ValueError, "schedule='cosine'"),
        ({"schedule": ["step", "step"]}, ValueError, "twice"),
    ],
)
def test_bad_knobs_are_refused_with_their_name_and_value(knobs, error, words):
    with pytest.raises(error) as info:
        SearchSpace(epochs=10, **knobs)
    assert words in str(info.value)


def test_empty_when_nothing_can_vary():
    fixed = dict(learning_rate=0.1, l2=None, dropout=None)
    assert SearchSpace(schedule="constant", **fixed).is_empty
    # ranges of a schedule that is never tried do not count
    assert SearchSpace(schedule="constant", step_every=(1, 5), **fixed).is_empty
    assert not SearchSpace(schedule="step", **fixed).is_empty
    assert not SearchSpace(schedule=["constant", "step"], step_factor=0.5,
                           step_every=2, **fixed).is_empty


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(1e-8, 1e3), decades=st.floats(0.1, 8),
    where=st.floats(0, 1), zoom=st.floats(0.01, 1),
)
def test_zoomed_log_range_has_the_zoomed_log_width_and_stays_inside(
    low, decades, where, zoom
):
    high = low * 10**decades
    value = low * 10 ** (decades * where)
    new_low, new_high = zoom_range(low, high, value, zoom, "log")
    assert np.log10(new_high / new_low) == pytest.approx(zoom * decades,
                                                         rel=1e-6)
    assert low * (1 - 1e-9) <= new_low and new_high <= high * (1 + 1e-9)
    # the value stays inside unless the window had to shift to fit
    assert new_low * (1 - 1e-9) <= value <= new_high * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 50), span=st.integers(1, 60), where=st.floats(0, 1),
       zoom=st.floats(0.01, 1))
def test_zoomed_int_range_keeps_two_values_and_the_best(low, span, where, zoom):
    high = low + span
    value = low + round(span * where)
    new_low, new_high = zoom_range(low, high, value, zoom, "int")
    assert isinstance(new_low, int) and isinstance(new_high, int)
    assert low <= new_low < new_high <= high
    assert new_low <= value <= new_high


def test_narrow_zooms_each_range_around_the_best_and_fixes_its_schedule():
    space = SearchSpace(epochs=10, dropout=None)
    best = space.values({"schedule": "exponential", "learning_rate": 1e-2,
                         "exponential_decay": 0.1, "l2": 10**-2.3})
    fine = space.narrow(best, zoom=0.25)
    assert fine.schedules == ("exponential",)
    assert fine.off == ("dropout",)
    # 4 decades of learning rate -> 1 decade centred on 1e-2 (log space)
    low, high = fine.ranges["learning_rate"]
    assert np.log10([low, high]) == pytest.approx([-2.5, -1.5])
    # l2: best 10^-2.3 -> [10^-2.8, 10^-1.8], shifted down to end at 1e-2
    low, high = fine.ranges["l2"]
    assert np.log10([low, high]) == pytest.approx([-3.0, -2.0])
    # knobs of other schedules keep their ranges (and are never sampled)
    assert fine.ranges["step_factor"] == space.ranges["step_factor"]


def test_edge_warnings_name_the_knob_side_and_range():
    space = SearchSpace(epochs=20)
    values = space.values({"schedule": "step", "learning_rate": 0.8,
                           "step_factor": 0.5, "step_every": 1,
                           "l2": 1.2e-6, "dropout": 0.0})
    warnings = space.edge_warnings(values, fraction=0.1)
    assert any(w.startswith("best learning_rate=0.8 is at the upper edge "
                            "of its range [0.0001, 1]") for w in warnings)
    assert any("best l2=1.2e-06 is at the lower edge" in w for w in warnings)
    # a lower end that cannot be passed is no edge: no dropout, every epoch
    assert not any("dropout" in w or "step_every" in w for w in warnings)
    assert len(warnings) == 2
    middle = space.values({"schedule": "step", "learning_rate": 1e-2,
                           "step_factor": 0.5, "step_every": 10,
                           "l2": 1e-4, "dropout": 0.25})
    assert len(space.edge_warnings(middle)) == 1  # step_every at its top
    assert relative_position(1e-4, 1.0, 1e-2, "log") == pytest.approx(0.5)


def test_declare_registers_log_ranges_and_conditional_schedule_parameters():
    space = SearchSpace(epochs=10, l2=1e-4)
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    declared = {p.name: p for p in hp.space}
    assert declared["learning_rate"].sampling == "log"
    assert (declared["learning_rate"].min_value,
            declared["learning_rate"].max_value) == (1e-4, 1.0)
    assert declared["dropout"].sampling == "linear"
    assert list(declared["schedule"].values) == ["step", "exponential",
                                                 "inverse_time"]
    assert "l2" not in declared  # fixed: not searched, but handed over
    assert values["l2"] == 1e-4
    condition = declared["exponential_decay"].conditions[0]
    assert condition.name == "schedule" and condition.values == ["exponential"]
    # the first schedule is active by default: the others' knobs are None
    assert values["schedule"] == "step"
    assert values["exponential_decay"] is None
    assert values["step_every"] is not None


def test_random_samples_respect_ranges_and_conditions():
    space = SearchSpace(epochs=10)
    hp = keras_tuner.HyperParameters()
    space.declare(hp)
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective="val_loss", max_trials=300, hyperparameters=hp, seed=0
    )
    rates, schedules = [], set()
    for i in range(300):
        sampled = oracle.populate_space(str(i))["values"]
        values = space.values(sampled)
        schedules.add(values["schedule"])
        rates.append(values["learning_rate"])
        for name, (low, high) in space.ranges.items():
            if values[name] is not None:
                assert low <= values[name] <= high
        owned = {"step": "step_every", "exponential": "exponential_decay",
                 "inverse_time": "inverse_time_decay"}
        for schedule, knob in owned.items():
            assert (values[knob] is not None) == (values["schedule"] == schedule)
    assert schedules == {"step", "exponential", "inverse_time"}
    # log-uniform: each of the 4 decades gets about a quarter of the samples
    counts = np.histogram(np.log10(rates), bins=[-4, -3, -2, -1, 0])[0]
    assert counts.min() > 40
