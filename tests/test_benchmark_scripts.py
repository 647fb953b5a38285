"""`benchmarks/gpu.sh`, the accelerator run, works at its smallest size.

It is run where an accelerator is lent, rarely: this checks on the CPU that
it still produces every table, headed by the device, so that such a run is
not lost to a broken script. The run is marked `slow` (about a minute);
`.ci/run` runs it. No timing is asserted.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _bash():
    if shutil.which("bash") is None:
        pytest.skip("no bash")


def test_an_unknown_backend_is_refused_before_anything_runs(tmp_path):
    _bash()
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out"), "1", "jax tf"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "unknown backend: tf" in done.stderr
    assert not (tmp_path / "out" / "jax.md").exists()


@pytest.mark.slow
def test_the_gpu_run_writes_every_table_headed_by_its_device(tmp_path):
    pytest.importorskip("tensorflow")
    _bash()
    out = tmp_path / "out"
    # each run's own limit well above its 10-20 s, on a CI machine busy
    # with the other slow tests
    env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2",
               GPU_BENCH_TIMEOUT="600")
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out), "1", "tensorflow", "5"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr
    table = (out / "tensorflow.md").read_text()
    assert "failed or ran past" not in table, (
        table + (out / "tensorflow.log").read_text()[-3000:])
    runs = re.findall(r"^== (\S+)", table, flags=re.M)
    assert runs == ["overhead.py"] * 4 + ["ema_backends.py"]
    headers = re.findall(
        r"^keras \S+, backend tensorflow, (.+?), \d+ (?:rounds|repeats)",
        table, flags=re.M)
    assert headers == [f"CPU, {os.cpu_count()} cores"] * 5
    for model in ("mlp128", "mlp"):
        for variant in ("ExponentialMovingAverage(every=1)",
                        "TrainingDoctor(x_probe=x[:256])"):
            assert re.search(
                rf"^\| {model} \| {re.escape(variant)} \| \d+\.\d+x", table,
                flags=re.M), (model, variant)
    assert re.search(r"^\| keras SGD\(use_ema=True\) \| \d+\.\d+x", table,
                     flags=re.M)
