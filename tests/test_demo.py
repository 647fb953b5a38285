"""The demo, run as a user would, read back with TensorBoard's own reader."""

import base64
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util


def scalar_series(run_dir, subdir, tag):
    accumulator = EventAccumulator(
        os.path.join(run_dir, subdir), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    return [
        float(tensor_util.make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors(tag)
    ]


@pytest.mark.slow  # the demo in a new process, about a minute; .ci/run also runs it
def test_quick_demo_writes_logs_and_report(tmp_path):
    # as a user runs it: TF_CPP_MIN_LOG_LEVEL unset (the conftest sets it)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_trainopt", "demo", "--quick",
         "--epochs", "4", "--logdir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = glob.glob(str(tmp_path / "*"))
    # no TensorFlow/absl C++ log lines ("I0000 00:00:17... cudart_stub.cc:31]")
    for line in (result.stdout + result.stderr).splitlines():
        assert not re.match(r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ", line), line
        assert not line.startswith("WARNING: All log messages before absl")

    # The closing hint works as printed: before, a bare `tensorboard`, not
    # found when the environment's bin/ is not on PATH (`.venv/bin/python`).
    (hint,) = re.findall(r"open TensorBoard: (.+) --logdir (\S+)$",
                         result.stdout, flags=re.MULTILINE)
    assert hint[1] == run_dir
    command = shlex.split(hint[0])
    assert shutil.which(command[0]), hint[0]
    version = subprocess.run(command + ["--version_tb"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert version.returncode == 0, version.stderr[-2000:]

    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["test_accuracy"] > 0.85  # digits are easy; chance is 0.1
    assert summary["ema_test_accuracy"] > 0.85
    assert os.path.exists(os.path.join(run_dir, "report.md"))

    # StepDecay(factor=0.5, every=4 // 3 = 1) from 0.1: halves every epoch.
    rates = scalar_series(run_dir, "train", "epoch_learning_rate")
    assert rates == pytest.approx([0.1, 0.05, 0.025, 0.0125], rel=1e-6)
    losses = scalar_series(run_dir, "train", "epoch_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert len(scalar_series(run_dir, "validation", "epoch_accuracy")) == 4

    # The monitors ran and wrote their shared run.
    gaps = scalar_series(run_dir, "monitors", "generalization_gap")
    assert len(gaps) == 4
    assert summary["fit_diagnosis"][0] in ("good_fit", "overfitting",
                                           "underfitting")
    assert summary["loss_diagnosis"][0] in ("good", "learning_rate_too_low",
                                            "learning_rate_too_high")
    assert set(summary["update_ratios"]) == {"hidden", "output"}
    assert summary["activations"]["hidden"]["dead_fraction"] is not None
    report = open(os.path.join(run_dir, "report.md")).read()
    assert "What the monitors say" in report and "| gap |" in report
    assert "exponential moving average" in report

    # Last, the HTML report of everything the run logged, its path printed.
    html_path = os.path.join(os.path.abspath(run_dir), "report.html")
    assert f"report: {html_path}" in result.stdout
    page = open(html_path, encoding="utf-8").read()
    found = re.findall(r'<section id="([\w-]+)">', page)
    assert found == ["advice", "findings", "results", "batch-loss",
                     "epoch-loss", "accuracy", "learning-rate",
                     "update-ratios", "activations"]
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 7
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
               for image in images)
    for advice in summary["advice"]:
        assert advice.split(":")[0] in page
    # The test accuracies went to TensorBoard (`log_results`) and the table.
    for variant, key in (("final", "test_accuracy"),
                         ("ema", "ema_test_accuracy")):
        logged = scalar_series(run_dir, "results",
                               f"results/test_accuracy/{variant}")
        assert logged == [pytest.approx(summary[key], rel=1e-6)]
        assert (f"<td>test_accuracy/{variant}</td>"
                f"<td>{summary[key]:.4g}</td>") in page
