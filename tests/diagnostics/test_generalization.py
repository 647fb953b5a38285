import math

import pytest

from keras_trainopt.diagnostics import diagnose_fit

GOOD = dict(lower_better=False, overfitting_gap=0.1, underfitting_gap=0.05,
            underfitting_value=0.8)


def test_verdicts():
    assert diagnose_fit(0.99, 0.75, **GOOD).verdict == "overfitting"
    assert diagnose_fit(0.55, 0.54, **GOOD).verdict == "underfitting"
    assert diagnose_fit(0.9, 0.88, **GOOD).verdict == "good_fit"


# -- found by fuzzing (issue 7) ------------------------------------------------


@pytest.mark.parametrize(
    "changes, name",
    [(dict(train="0.9"), "train"), (dict(validation=None), "validation"),
     (dict(lower_better=1), "lower_better"),
     (dict(overfitting_gap=-0.1), "overfitting_gap"),
     (dict(underfitting_gap="x"), "underfitting_gap"),
     (dict(underfitting_value=math.nan), "underfitting_value")],
)
def test_arguments_are_checked(changes, name):
    # before: "unsupported operand type(s) for -: 'str' and 'float'" & co.
    kwargs = dict(train=0.9, validation=0.8, **GOOD) | changes
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        diagnose_fit(**kwargs)


def test_non_finite_values_are_judged_not_refused():
    # a diverged run logs NaN: the monitor must still get a verdict
    assert diagnose_fit(math.nan, 0.5, **GOOD).verdict == "good_fit"
