import copy
import math

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_trainopt.diagnostics import advise
from keras_trainopt.diagnostics.advice import CONTRADICTIONS
from keras_trainopt.diagnostics.advice import FINDINGS
from keras_trainopt.diagnostics.advice import SEVERITIES
from keras_trainopt.diagnostics.advice import contradictions


def messages(found):
    return [str(a) for a in found]


def test_divergence_names_the_step_and_a_tenth_of_the_rate():
    (first, *_) = advise(loss={"diagnosis": "learning_rate_too_high",
                               "reason": "the loss diverged at step 120 ...",
                               "diverged_at_step": 120, "learning_rate": 0.03})
    assert first.topic == "learning_rate" and first.severity == "problem"
    assert str(first) == ("learning rate too high: the loss diverged at step "
                          "120; try about 0.003")


def test_a_slow_loss_asks_for_a_higher_rate():
    (first, *_) = advise(loss={"diagnosis": "learning_rate_too_low",
                               "reason": "the loss falls almost linearly: ...",
                               "diverged_at_step": None, "learning_rate": 1e-4})
    assert str(first) == ("learning rate too low: the loss falls almost "
                          "linearly; try about 0.0003")


def test_overfitting_says_when_to_stop():
    found = advise(fit={"diagnosis": "overfitting", "reason": "...",
                        "gaps": [0.01, 0.05, 0.12, 0.25], "best_epoch": 1})
    assert messages(found) == [
        "strong overfitting: gap 0.25 at epoch 4; add L2 or dropout, or get "
        "more data, or stop at epoch 2"
    ]


def test_a_diverged_gap_is_left_to_the_loss_advice():
    found = advise(fit={"diagnosis": "overfitting", "reason": "...",
                        "gaps": [0.1, float("inf")], "best_epoch": 0})
    assert [a.topic for a in found] == ["overall"]


def test_isolated_ratios_inside_ten_times_the_band_are_no_finding():
    # Adam scales each weight's step: one layer at 3e-5 or 2e-2 is no
    # evidence on its own; every layer below the band is.
    found = advise(update_ratios={"dense": 1e-3, "dense_1": 3e-5,
                                  "dense_2": 0.02})
    assert [a.finding for a in found] == ["healthy"]
    (low,) = advise(update_ratios={"dense": 2e-5, "dense_1": 3e-5})
    assert low.finding == "learning_rate_too_low"
    assert "every update ratio is below 1e-04" in str(low)
    (high,) = advise(update_ratios={"dense": 1e-3, "dense_1": 0.2},
                     loss={"diagnosis": "good", "learning_rate": 0.5})
    assert high.finding == "learning_rate_too_high"
    assert str(high).endswith("try about 0.05")


def test_a_flat_loss_with_dead_relus_or_big_updates_is_no_call_to_raise():
    flat = {"diagnosis": "learning_rate_too_low", "learning_rate": 3.0,
            "reason": "the loss barely moved: 2.30 to 2.30"}
    # killed during training (alive at the start): the rate
    found = advise(loss=flat,
                   activations={"hidden": {"dead_fraction": 0.97}},
                   initial_activations={"hidden": {"dead_fraction": 0.05}})
    assert [a.finding for a in found] == ["learning_rate_too_high"]
    assert str(found[0]).endswith("try about 0.3")
    assert "the loss barely moved" in str(found[0])  # merged evidence
    # dead from the start: the initialization, not the rate
    found = advise(loss=flat,
                   activations={"hidden": {"dead_fraction": 0.97}},
                   initial_activations={"hidden": {"dead_fraction": 0.97}})
    assert [a.finding for a in found] == ["dead_units"]
    assert "from the start" in str(found[0])
    found = advise(loss=flat, update_ratios={"dense": 0.15})
    assert [a.finding for a in found] == ["learning_rate_too_high"]
    # without such signs a flat loss still asks for a higher rate
    assert "try about 9" in advise(loss=flat)[0].message


def test_a_zero_update_ratio_is_no_gradient_never_a_rate_too_low():
    (found,) = advise(update_ratios={"dense": 0.0, "dense_1": 0.0})
    assert found.finding == "no_gradient"
    assert "no gradient reaches layers dense, dense_1" in str(found)
    assert "too low" not in str(found)


def test_a_non_finite_update_ratio_means_the_rate_is_too_high():
    found = advise(update_ratios={"dense": float("nan"), "dense_1": 1e-3})
    assert [(a.finding, a.severity) for a in found] == [
        ("learning_rate_too_high", "problem")]
    assert "layer dense is not finite (the weights overflowed)" in str(
        found[0])


def test_issue_18_blow_up_plateau_dead_units_zero_ratios_is_one_finding():
    # The issue's run: nesterov_sgd(3.0) on the digits MLP.
    found = advise(
        loss={"diagnosis": "good", "pattern": "blow_up", "learning_rate": 3.0,
              "peak_loss": 7.585, "recent_loss": 2.44,
              "chance_loss": math.log(10), "reason": "..."},
        fit={"diagnosis": "underfitting", "gaps": [0.0, -0.02]},
        update_ratios={"dense": 0.0, "dense_1": 0.0},
        activations={"dense": {"saturated_fraction": None,
                               "dead_fraction": 1.0}})
    assert [a.finding for a in found] == ["learning_rate_too_high"]
    (advice,) = found
    assert advice.severity == "problem"
    assert len(advice.evidence) == 4  # loss, dead units, zero ratios, fit
    assert str(advice).endswith("try about 0.3")


def test_a_nan_loss_without_a_rise_points_at_the_data():
    found = advise(loss={"diagnosis": "learning_rate_too_high",
                         "pattern": "non_finite", "diverged_at_step": 10,
                         "learning_rate": 1e-3},
                   update_ratios={"dense": float("nan")},
                   fit={"diagnosis": "underfitting", "gaps": [0.01]})
    assert [a.finding for a in found] == ["non_finite_loss"]
    assert "NaN or inf in the inputs" in str(found[0])


def test_nan_weights_under_a_loss_that_never_rose_point_at_the_data():
    # A NaN input poisons a kernel row; where a ReLU maps NaN to 0 the layer
    # goes silent (all units "dead") and the loss sits flat at chance: no
    # rise, so not a rate too high (TensorFlow on AVX-512 CPUs, the
    # diagnosis benchmark's "NaN in the data").
    found = advise(
        loss={"diagnosis": "learning_rate_too_low", "pattern": "flat",
              "learning_rate": 1e-3, "recent_loss": 2.302,
              "chance_loss": math.log(10)},
        update_ratios={"dense": float("nan"), "dense_1": 3e-7},
        activations={"dense": {"saturated_fraction": None,
                               "dead_fraction": 1.0}},
        initial_activations={"dense": {"saturated_fraction": None,
                                       "dead_fraction": 0.0}},
        fit={"diagnosis": "underfitting", "gaps": [0.0]})
    assert [a.finding for a in found] == ["non_finite_loss"]
    assert "weights of layer dense turned NaN or inf" in str(found[0])
    assert "NaN or inf in the inputs" in str(found[0])
    # the same ratio after a blow-up is an overflow: the rate
    found = advise(loss={"pattern": "blow_up", "learning_rate": 3.0},
                   update_ratios={"dense": float("nan")})
    assert [a.finding for a in found] == ["learning_rate_too_high"]


def test_vanishing_gradients_need_three_layers_and_two_decades():
    ratios = {"d1": 1e-7, "d2": 1e-5, "d3": 3e-3}
    (found,) = advise(update_ratios=ratios)
    assert found.finding == "vanishing_gradients"
    assert "d1's update ratio (1.0e-07) is 30000x below layer d3's" in str(
        found)
    assert advise(update_ratios={"d1": 1e-7, "d3": 3e-3})[0].finding != (
        "vanishing_gradients")
    assert advise(update_ratios={"d1": 1e-4, "d2": 1e-3, "d3": 3e-3})[
        0].finding == "healthy"


def test_inputs_and_the_model_are_root_causes():
    found = advise(inputs={"rms": 120.0, "non_finite": 0},
                   loss={"diagnosis": "learning_rate_too_high",
                         "pattern": "diverged", "diverged_at_step": 30,
                         "learning_rate": 0.01})
    assert [a.finding for a in found] == ["unnormalized_inputs"]
    assert found[0].severity == "problem"  # it explains a problem
    assert "the loss diverged at step 30" in str(found[0])
    (alone,) = advise(inputs={"rms": 120.0})
    assert (alone.finding, alone.severity) == ("unnormalized_inputs",
                                               "warning")
    assert advise(inputs={"rms": 0.5})[0].finding == "healthy"
    (found,) = advise(model={"output_activation": "softmax",
                             "from_logits": True,
                             "loss": "sparse_categorical_crossentropy"})
    assert found.finding == "loss_output_mismatch"
    (found,) = advise(model={"output_activation": "linear",
                             "from_logits": False,
                             "loss": "binary_crossentropy"})
    assert found.finding == "loss_output_mismatch"
    assert advise(model={"output_activation": "softmax",
                         "from_logits": False,
                         "loss": "categorical_crossentropy"})[0].finding == (
        "healthy")


def test_the_output_layer_is_not_called_saturated():
    # a confident sigmoid output sits near 0 and 1: that is its job
    stats = {"out": {"saturated_fraction": 0.99, "dead_fraction": None}}
    assert advise(activations=stats)[0].finding == "saturated_units"
    assert advise(activations=stats, model={"output_layer": "out"})[
        0].finding == "healthy"


@pytest.mark.parametrize(
    "stats, text",
    [
        ({"saturated_fraction": 0.95, "dead_fraction": None},
         "saturated units: layer h is 95% saturated; lower its initial "
         "weights"),
        ({"saturated_fraction": None, "dead_fraction": 0.6},
         "dead units: layer h has 60% dead units; check its initialization"),
    ],
)
def test_saturated_and_dead_layers(stats, text):
    (first,) = advise(activations={"h": stats})
    assert first.severity == "problem" and str(first).startswith(text)


def test_below_the_thresholds_nothing_is_reported():
    found = advise(activations={"h": {"saturated_fraction": 0.4,
                                      "dead_fraction": 0.1}},
                   update_ratios={"h": 2e-3},
                   loss={"diagnosis": "good", "reason": "fine"},
                   fit={"diagnosis": "good_fit", "gaps": [0.01]})
    assert [(a.topic, a.severity, a.finding) for a in found] == [
        ("overall", "ok", "healthy")]


def test_problems_come_before_warnings():
    found = advise(update_ratios={"a": 1e-6},
                   activations={"b": {"dead_fraction": 0.9}},
                   fit={"diagnosis": "overfitting", "gaps": [0.3]})
    assert [a.severity for a in found] == ["problem", "problem"]
    assert [a.finding for a in found] == ["dead_units", "overfitting"]
    found = advise(update_ratios={"a": 1e-6, "b": 2e-6},
                   fit={"diagnosis": "overfitting", "gaps": [0.3]})
    assert [(a.finding, a.severity) for a in found] == [
        ("overfitting", "problem"), ("learning_rate_too_low", "warning")]


def test_strong_is_relative_to_the_given_gap():
    fit = {"diagnosis": "overfitting", "gaps": [0.3], "best_epoch": None}
    assert str(advise(fit=fit)[0]).startswith("strong overfitting: gap 0.30")
    assert str(advise(fit=fit, strong_gap=0.5)[0]).startswith(
        "overfitting: gap 0.30")


def test_advise_is_pure():
    evidence = dict(
        loss={"diagnosis": "learning_rate_too_low", "pattern": "flat",
              "learning_rate": 0.1, "reason": "the loss barely moved"},
        fit={"diagnosis": "underfitting", "gaps": [0.0]},
        update_ratios={"a": 1e-6, "b": 0.0},
        activations={"a": {"dead_fraction": 0.9}})
    before = copy.deepcopy(evidence)
    first, second = advise(**evidence), advise(**evidence)
    assert first == second
    assert evidence == before  # the inputs are not touched


# -- no contradictions, whatever the evidence (hypothesis) ----------------------

_RATIO = st.one_of(st.none(), st.just(0.0), st.just(math.nan),
                   st.just(math.inf),
                   st.floats(1e-9, 10.0, allow_nan=False))
_FRACTION = st.one_of(st.none(), st.floats(0.0, 1.0))
_LAYERS = st.sampled_from(["a", "b", "c", "d"])
_UNITS = st.dictionaries(_LAYERS, st.fixed_dictionaries(
    {"saturated_fraction": _FRACTION, "dead_fraction": _FRACTION}),
    max_size=4)
_LOSS = st.fixed_dictionaries({
    "diagnosis": st.sampled_from(["good", "learning_rate_too_high",
                                  "learning_rate_too_low",
                                  "insufficient_data"]),
    "pattern": st.sampled_from(["", "non_finite", "diverged", "blow_up",
                                "oscillating", "rebound", "flat", "slow",
                                "at_chance",
                                "good", "insufficient_data"]),
    "reason": st.text(max_size=20),
    "diverged_at_step": st.one_of(st.none(), st.integers(0, 1000)),
    "learning_rate": st.one_of(st.none(), st.floats(1e-6, 10.0)),
    "recent_loss": st.one_of(st.none(), st.floats(0.0, 100.0)),
    "peak_loss": st.one_of(st.none(), st.floats(0.0, 1000.0)),
    "chance_loss": st.one_of(st.none(), st.floats(0.1, 5.0)),
})
_FIT = st.fixed_dictionaries({
    "diagnosis": st.sampled_from(["good_fit", "overfitting", "underfitting",
                                  "insufficient_data"]),
    "gaps": st.lists(st.floats(-1.0, 1.0), max_size=4),
    "best_epoch": st.one_of(st.none(), st.integers(0, 3)),
    "evidence": st.sampled_from(["", "the validation loss rose"]),
})


@settings(max_examples=300, deadline=None)
@given(loss=st.one_of(st.none(), _LOSS), fit=st.one_of(st.none(), _FIT),
       update_ratios=st.one_of(st.none(),
                               st.dictionaries(_LAYERS, _RATIO, max_size=4)),
       activations=st.one_of(st.none(), _UNITS),
       initial_activations=st.one_of(st.none(), _UNITS),
       inputs=st.one_of(st.none(), st.fixed_dictionaries({
           "rms": st.floats(0.0, 1000.0),
           "non_finite": st.integers(0, 3)})),
       model=st.one_of(st.none(), st.fixed_dictionaries({
           "output_activation": st.sampled_from(
               [None, "softmax", "sigmoid", "linear", "relu"]),
           "from_logits": st.sampled_from([None, True, False]),
           "loss": st.sampled_from([None, "sparse_categorical_crossentropy",
                                    "mse", "binary_crossentropy"]),
           "output_layer": st.sampled_from([None, "a", "d"])})))
def test_no_contradictions_whatever_the_evidence(**evidence):
    found = advise(**evidence)
    findings = [a.finding for a in found]
    assert findings and set(findings) <= set(FINDINGS)
    assert len(findings) == len(set(findings))  # one advice per cause
    for pair in CONTRADICTIONS:
        assert not pair <= set(findings), findings
    assert contradictions(found) == []
    # healthy stands alone, and only when nothing else is found
    assert ("healthy" in findings) == (findings == ["healthy"])
    ranks = [SEVERITIES.index(a.severity) for a in found]
    assert ranks == sorted(ranks)  # worst first
    # an update ratio of exactly 0 never asks for a higher rate
    zero_only = evidence["update_ratios"] and all(
        r == 0.0 for r in evidence["update_ratios"].values())
    if zero_only and not evidence["loss"]:
        assert "learning_rate_too_low" not in findings


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(loss=5), "loss"), (dict(fit="x"), "fit"),
     (dict(update_ratios=[1e-3]), "update_ratios"),
     (dict(activations=0.5), "activations"),
     (dict(ratio_band=(1e-2, 1e-4)), "ratio_band"),
     (dict(ratio_band=(1e-4,)), "ratio_band"),
     (dict(dead_threshold=-1), "dead_threshold")],
)
def test_arguments_are_checked(kwargs, name):
    # before: AttributeError "'float' object has no attribute 'get'" & co.
    with pytest.raises((TypeError, ValueError), match=f"`{name}"):
        advise(**kwargs)


def test_layer_without_dead_fraction_and_zero_threshold():
    # before: KeyError 'dead_fraction'
    found = advise(loss={"diagnosis": "learning_rate_too_low"},
                   activations={"dense": {}}, dead_threshold=0.0)
    assert found


def test_a_flat_loss_with_healthy_update_ratios_is_no_rate_too_low():
    # the weights move at cs231n's healthy pace; the model cannot use it
    flat = {"diagnosis": "learning_rate_too_low", "pattern": "flat",
            "reason": "the loss barely moved: ...", "learning_rate": 0.01}
    at_chance = {"diagnosis": "underfitting", "gaps": [0.01],
                 "evidence": "training is no better than chance"}
    found = advise(loss=flat, fit=at_chance, update_ratios={"dense": 1e-2})
    assert [a.finding for a in found] == ["underfitting"]
    found = advise(loss=flat, fit=at_chance, update_ratios={"dense": 1e-6})
    assert [a.finding for a in found] == ["learning_rate_too_low"]
    assert "training is no better than chance" in str(found[0])


def test_numpy_numbers_count_as_evidence():
    import numpy as np

    (found,) = advise(update_ratios={"a": np.float32(0.0)},
                      activations={"a": {"dead_fraction": np.float32(0.9)}})
    assert found.finding == "dead_units"
    assert "no gradient reaches layer a" in str(found)
