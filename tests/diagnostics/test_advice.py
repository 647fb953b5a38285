import pytest

from keras_trainopt.diagnostics import advise


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


def test_update_ratios_outside_the_band_are_named():
    found = advise(update_ratios={"dense": 1e-3, "dense_1": 3e-5,
                                  "dense_2": 0.2})
    assert messages(found) == [
        "layer dense_1: update ratio 3.0e-05 (healthy ~1e-3) is low: its "
        "learning rate is too low, or its weights too large",
        "layer dense_2: update ratio 2.0e-01 (healthy ~1e-3) is high: its "
        "learning rate is too high",
    ]


def test_a_flat_loss_with_dead_relus_or_big_updates_is_no_call_to_raise():
    flat = {"diagnosis": "learning_rate_too_low", "learning_rate": 3.0,
            "reason": "the loss barely moved: 2.30 to 2.30"}
    found = advise(loss=flat, activations={"hidden": {
        "saturated_fraction": None, "dead_fraction": 0.97}})
    rate = [a.message for a in found if a.topic == "learning_rate"]
    assert rate == ["the loss hardly fell, yet layer hidden has 97% dead "
                    "units: do not raise the learning rate; a rate too high "
                    "early on kills ReLUs and stalls the loss, so try about "
                    "0.3"]
    found = advise(loss=flat, update_ratios={"dense": 0.015})
    assert not any("try about 9" in a.message for a in found)
    assert "layer dense's update ratio is 1.5e-02" in found[0].message \
        or "layer dense's update ratio is 1.5e-02" in found[1].message
    # without such signs a flat loss still asks for a higher rate
    assert "try about 9" in advise(loss=flat)[0].message


def test_a_non_finite_update_ratio_is_a_problem_not_a_low_ratio():
    found = advise(update_ratios={"dense": float("nan"), "dense_1": 1e-3})
    assert [(a.severity, a.message) for a in found] == [
        ("problem", "layer dense: update ratio is not finite: its weights "
                    "overflowed; lower the learning rate")]


@pytest.mark.parametrize(
    "stats, text",
    [
        ({"saturated_fraction": 0.95, "dead_fraction": None},
         "layer h is 95% saturated: lower its initial weights"),
        ({"saturated_fraction": None, "dead_fraction": 0.6},
         "layer h has 60% dead units: lower the learning rate"),
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
    assert [(a.topic, a.severity) for a in found] == [("overall", "ok")]


def test_problems_come_before_warnings():
    found = advise(update_ratios={"a": 1e-6},
                   activations={"b": {"dead_fraction": 0.9}})
    assert [a.severity for a in found] == ["problem", "warning"]


def test_strong_is_relative_to_the_given_gap():
    fit = {"diagnosis": "overfitting", "gaps": [0.3], "best_epoch": None}
    assert str(advise(fit=fit)[0]).startswith("strong overfitting: gap 0.30")
    assert str(advise(fit=fit, strong_gap=0.5)[0]).startswith(
        "overfitting: gap 0.30")


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
