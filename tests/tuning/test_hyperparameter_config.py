import math

import keras
import pytest

from keras_trainopt.tuning import HyperparameterConfig


def config(**values):
    base = {"learning_rate": 0.2, "schedule": "constant", "step_factor": None,
            "step_every": None, "exponential_decay": None,
            "inverse_time_decay": None, "l2": None, "dropout": None}
    return HyperparameterConfig(base | values)


@pytest.mark.parametrize(
    "values, formula",
    [
        ({"schedule": "step", "step_factor": 0.3, "step_every": 3},
         lambda t: 0.2 * 0.3 ** math.floor(t / 3)),
        ({"schedule": "exponential", "exponential_decay": 0.25},
         lambda t: 0.2 * math.exp(-0.25 * t)),
        ({"schedule": "inverse_time", "inverse_time_decay": 0.5},
         lambda t: 0.2 / (1 + 0.5 * t)),
    ],
)
def test_decay_callback_follows_the_schedule_formula(values, formula):
    callback = config(**values).decay_callback()
    assert config(**values).callbacks()[0].get_config() == callback.get_config()
    for epoch in range(12):
        assert callback.learning_rate(epoch) == pytest.approx(formula(epoch))


def test_constant_schedule_has_no_callback():
    assert config().decay_callback() is None
    assert config().callbacks() == []
    assert config(schedule=None).schedule == "constant"


def test_optimizer_is_nesterov_sgd_at_the_learning_rate():
    optimizer = config(learning_rate=0.05).optimizer(momentum=0.8)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov
    assert optimizer.get_config()["momentum"] == pytest.approx(0.8)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_regularizer_and_dropout_for_building_layers():
    regularizer = config(l2=3e-4).regularizer()
    assert isinstance(regularizer, keras.regularizers.L2)
    assert regularizer.get_config()["l2"] == pytest.approx(3e-4)
    assert config(l2=None).regularizer() is None
    assert config(l2=0.0).regularizer() is None
    assert config(dropout=None).dropout == 0.0
    assert config(dropout=0.3).dropout == 0.3


def test_reads_like_a_dict_and_describes_its_schedule():
    c = config(schedule="step", step_factor=0.5, step_every=4, l2=1e-4)
    assert c["l2"] == 1e-4 and len(c) == 8 and dict(c) == c.to_dict()
    assert c.describe_schedule() == "step(factor=0.5, every=4)"
    assert "dropout" not in repr(c)  # None values are not shown


@pytest.mark.parametrize(
    "values",
    [
        {"schedule": "exponential", "exponential_decay": 0.3},
        {"schedule": "inverse_time", "inverse_time_decay": 0.7},
        {"schedule": "step", "step_factor": 0.5, "step_every": 4},
    ],
)
def test_stretched_anneals_at_the_same_pace_over_more_epochs(values):
    original = config(**values)
    longer = original.stretched(3)
    assert longer.learning_rate == original.learning_rate
    for epoch in range(10):
        assert longer.decay_callback().learning_rate(3 * epoch) == (
            pytest.approx(original.decay_callback().learning_rate(epoch)))
    with pytest.raises(ValueError, match="Received: factor=0"):
        original.stretched(0)


def test_get_reads_a_knob_with_a_default():
    assert config(l2=1e-3).get("l2") == 1e-3
    assert config().get("momentum", 0.9) == 0.9
    assert "knob" in HyperparameterConfig.get.__doc__


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize("values", [5, "ab", [("learning_rate", 0.1)]])
def test_values_must_be_a_mapping(values):
    # before: "'int' object is not iterable" or "dictionary update sequence
    # element #0 has length 1", naming nothing (and a list of pairs passed)
    with pytest.raises(TypeError, match=r"`values` must be a dict"):
        HyperparameterConfig(values)
