"""The diagnosis benchmark (benchmarks/diagnosis.py), reduced: one seed.

Each scenario breaks one thing in a small training on digits; the doctor's
first finding must name it, a healthy run must get nothing but `healthy`,
and no advice list may hold a contradictory pair.
"""

import pytest

from benchmarks import diagnosis

# in the default run: a cause read from the loss, a healthy run and one
# read from the model; the other scenarios are `slow` (.ci/run)
QUICK = [
    "lr far too high (blow-up, plateau)",
    "healthy MLP",
    "softmax + from_logits=True",
]


_RUNS = {}


def record(name, seed=0):
    """`diagnosis.record`, each scenario trained once per test session."""
    if (name, seed) not in _RUNS:
        _RUNS[name, seed] = diagnosis.record(name, seed, keep_doctor=True)
    return _RUNS[name, seed]


def check(name, seed=0):
    row = record(name, seed)
    assert row["first"] == row["truth"], row["advice"]
    assert row["contradictions"] == []
    if row["truth"] == "healthy":
        assert row["findings"] == ["healthy"], row["advice"]
    return row


@pytest.mark.parametrize("name", QUICK)
def test_the_first_finding_names_the_cause(name):
    pytest.importorskip("sklearn")
    check(name)


def test_the_issue_run_is_one_finding_with_its_evidence_and_a_rate():
    # nesterov_sgd(3.0) on the digits MLP: blow-up, plateau near ln(10),
    # dead units, zero update ratios: one cause, not four findings
    pytest.importorskip("sklearn")
    row = record("lr far too high (blow-up, plateau)")
    (advice,) = [a for a in row["doctor"].advice if a.severity != "ok"]
    assert advice.finding == "learning_rate_too_high"
    assert any("blew up" in e for e in advice.evidence)
    assert any("dead units" in e for e in advice.evidence)
    assert any("update ratio 0" in e for e in advice.evidence)
    assert str(advice).endswith("try about 0.3")  # 3.0 / 10
    assert not any("too low" in str(a) for a in row["doctor"].advice)


@pytest.mark.slow  # 8 epochs
def test_the_oscillation_run_is_a_rebound_of_the_loss():
    # tanh MLP, SGD 0.1 with momentum 0.99: the loss falls, then climbs back
    # and bounces; the loss curve alone says "too high" (no dead ReLU here)
    pytest.importorskip("sklearn")
    row = record("lr too high (oscillation: momentum 0.99, tanh)")
    monitor = row["doctor"].monitors["loss"]
    assert monitor.pattern == "rebound", monitor.reason
    assert monitor.diagnosis == "learning_rate_too_high"
    losses = monitor.losses
    window = max(3, len(losses) // 10)
    lowest = min(sum(losses[i:i + window]) / window
                 for i in range(len(losses) - window + 1))
    assert monitor.recent_loss >= 1.5 * lowest  # the rule, by hand
    (advice,) = [a for a in row["doctor"].advice if a.severity != "ok"]
    assert advice.finding == "learning_rate_too_high"
    assert any("rose back" in e for e in advice.evidence), advice.evidence


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in diagnosis.SCENARIOS
                                  if n not in QUICK])
def test_every_scenario(name):
    pytest.importorskip("sklearn")
    check(name)
