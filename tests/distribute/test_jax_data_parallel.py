"""The callbacks under JAX's `keras.distribution.DataParallel`: same results
as one device.

The number of JAX CPU devices is fixed when JAX initializes, so the
scenarios run in a fresh process (`jax_scenarios.py`) with
`KERAS_BACKEND=jax` and `XLA_FLAGS=--xla_force_host_platform_device_count=2`,
whatever backend this test process uses. That one process trains every case
twice: with no distribution (the reference), then under
`DataParallel(devices=jax.devices())` over the two CPU devices (each global
batch of 16 split into two halves of 8, the variables replicated).

Compared: the final weights, the EMA and SWA averages and raw weights, the
learning rate before every step, Keras' per-epoch history, LossMonitor's
batch losses and rates, UpdateRatioLogger's ratios, all within 1e-6
(absolute); steps, counts and diagnoses exactly. Measured on this model
(CPU, 16 steps): weights and averages differ by at most 1.5e-7, batch
losses by 2.4e-7, update ratios by 6e-8, rates not at all. As with
`tf.distribute` (see test_distribute.py) bit-for-bit equality is not
expected: each device sums its 8 rows and the two partial sums are then
added. The child takes about 15-20 s on 2 cores.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("jax")

# a JAX process on 2 host devices: about 40 s; `.ci/run` runs it where JAX is
pytestmark = pytest.mark.slow

from tests.distribute.jax_scenarios import CASES  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATOL = 1e-6
TIMEOUT = 240


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("jax_data_parallel"))
    out = os.path.join(base, "out")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CONFIG", "XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0", TMPDIR=base)
    start = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.distribute.jax_scenarios", out,
             *CASES],
            cwd=REPO, env=env, capture_output=True, text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"JAX scenarios still running after {TIMEOUT} s")
    print(f"\nJAX DataParallel scenarios: {time.monotonic() - start:.0f} s")
    assert result.returncode == 0, (
        f"JAX scenarios failed (exit code {result.returncode}); output:\n"
        + (result.stdout + result.stderr)[-6000:]
    )
    return out


def load(out, mode, case):
    folder = os.path.join(out, mode)
    with np.load(os.path.join(folder, f"{case}.npz")) as npz:
        arrays = dict(npz)
    with open(os.path.join(folder, f"{case}.json")) as f:
        facts = json.load(f)
    return arrays, facts


def assert_same_facts(expected, actual, path=""):
    """Floats within ATOL, everything else (ints, strings, keys) equal."""
    if isinstance(expected, dict):
        assert sorted(expected) == sorted(actual), path
        for key in expected:
            assert_same_facts(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), path
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same_facts(e, a, f"{path}[{i}]")
    elif isinstance(expected, float):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL,
                                   err_msg=path)
    else:
        assert expected == actual, path


# the facts that differ by design between the two runs
PER_MODE = ("seconds", "num_devices", "weight_shardings",
            "optimizer_shardings")


@pytest.mark.parametrize("case", CASES)
def test_data_parallel_matches_one_device(runs, case):
    single, single_facts = load(runs, "single", case)
    parallel, parallel_facts = load(runs, "data_parallel", case)

    # it did run on both devices: replicated variables over a 2-device mesh
    assert parallel_facts["num_devices"] == 2
    assert parallel_facts["weight_shardings"] == ["NamedSharding"]
    assert parallel_facts["optimizer_shardings"] == ["NamedSharding"]
    assert single_facts["weight_shardings"] == ["SingleDeviceSharding"]

    assert sorted(single) == sorted(parallel)
    assert "final/0" in single
    for key in single:
        np.testing.assert_allclose(parallel[key], single[key], rtol=0,
                                   atol=ATOL, err_msg=key)

    assert single_facts["iterations"] == 16
    assert len(single_facts["rates"]) == 16
    for key in PER_MODE:
        single_facts.pop(key)
        parallel_facts.pop(key)
    assert_same_facts(single_facts, parallel_facts)


def test_cases_cover_the_callbacks(runs):
    averages, averages_facts = load(runs, "single", "averages")
    assert {"ema_average/0", "swa_average/0"} <= set(averages)
    assert averages_facts["ema_num_averaged"] == 16  # every=1
    assert averages_facts["swa_num_averaged"] == 3  # epochs 1-3
    # StepDecay(every=6, unit="step") halves the rate inside the step
    assert sorted(set(averages_facts["rates"]), reverse=True) == pytest.approx(
        [0.1, 0.05, 0.025])
    monitors, monitors_facts = load(runs, "single", "monitors")
    assert monitors_facts["ema_num_averaged"] == 2  # the default every=8
    assert len(monitors_facts["loss_losses"]) == 16
    assert monitors_facts["ratio_values"]["hidden/kernel"]
    assert len(set(monitors_facts["rates"])) == 4  # one rate per epoch
