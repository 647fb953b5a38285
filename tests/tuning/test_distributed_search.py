"""A search on keras-tuner's distributed mode: a chief and 2 workers.

Three processes on 127.0.0.1 run the same `search_hyperparameters` call
(`distributed_job.py`) with keras-tuner's environment variables, on a port
found free by binding port 0. Each process is bounded by a timeout and
killed at the end. The chief's result is compared with keras-tuner's own
record of the trials (the oracle's `trial.json` files, read with
keras-tuner's `Trial.load`), the workers' own reports and TensorBoard's
reader of the HParams records.
"""

import glob
import json
import os
import socket
import subprocess
import sys

import pytest
from keras_tuner.engine import trial as trial_module
from tensorboard.plugins.hparams import metadata as hparams_metadata

from keras_trainopt.tuning.search_space import zoom_range
from tests import tb

JOB = os.path.join(os.path.dirname(__file__), "distributed_job.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TIMEOUT = 300  # seconds, for the whole job


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(tmp_path, name, log_dir):
    """Runs a chief and 2 workers; returns `{tuner id: its JSON report}`."""
    port = free_port()
    directory = str(tmp_path / f"kt-{name}")
    processes = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id,
                       KERASTUNER_ORACLE_IP="127.0.0.1",
                       KERASTUNER_ORACLE_PORT=str(port),
                       PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
            out = tmp_path / f"{name}-{tuner_id}.json"
            processes[tuner_id] = (subprocess.Popen(
                [sys.executable, JOB, directory, log_dir, str(out)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
        reports = {}
        for tuner_id, (process, out) in processes.items():
            _, stderr = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, stderr.decode()[-3000:]
            reports[tuner_id] = json.loads(out.read_text())
        return reports
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def oracle_trials(directory, stage):
    """keras-tuner's own record of a stage's trials: `{id: Trial}`."""
    trials = {}
    for path in glob.glob(os.path.join(directory, stage, "trial_*",
                                       "trial.json")):
        trial = trial_module.Trial.load(path)
        trials[trial.trial_id] = trial
    return trials


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("distributed")
    log_dir = str(tmp_path / "logs")
    first = run_job(tmp_path, "first", log_dir)
    return tmp_path, log_dir, first


@pytest.mark.slow
def test_the_chief_holds_every_workers_trials_as_the_oracle_does(job):
    tmp_path, _, reports = job
    chief = reports["chief"]
    assert chief["role"] == "chief"
    assert {reports[w]["role"] for w in ("tuner0", "tuner1")} == {"worker"}
    assert len(chief["trials"]) == 6
    for stage in ("coarse", "fine"):
        recorded = oracle_trials(str(tmp_path / "kt-first"), stage)
        rows = {t["trial"]: t for t in chief["trials"] if t["stage"] == stage}
        assert set(rows) == set(recorded) and len(rows) == 3
        for trial_id, trial in recorded.items():
            assert rows[trial_id]["score"] == pytest.approx(trial.score)
            assert rows[trial_id]["learning_rate"] == pytest.approx(
                trial.hyperparameters.values["learning_rate"])
        # every trial was trained by exactly one worker
        by_worker = [t["trial"] for w in ("tuner0", "tuner1")
                     for t in reports[w]["trials"] if t["stage"] == stage]
        assert sorted(by_worker) == sorted(recorded)
    best = max(chief["trials"], key=lambda t: t["score"])
    assert chief["best_score"] == pytest.approx(best["score"])


@pytest.mark.slow
def test_workers_take_the_fine_space_only_after_the_coarse_stage(job):
    tmp_path, _, reports = job
    chief = reports["chief"]
    spans = {}
    for worker in ("tuner0", "tuner1"):
        report = reports[worker]
        assert len(report["spans"]) == len(report["trials"])
        for row, span in zip(report["trials"], report["spans"], strict=True):
            spans.setdefault(row["stage"], []).append(span)
    assert max(end for _, end in spans["coarse"]) < min(
        start for start, _ in spans["fine"])
    # the fine space is narrowed around the best coarse trial of the oracle
    coarse = oracle_trials(str(tmp_path / "kt-first"), "coarse")
    best = max(coarse.values(), key=lambda t: t.score).hyperparameters.values
    low, high = zoom_range(1e-3, 0.3, best["learning_rate"], 0.25, "log")
    assert chief["fine_ranges"]["learning_rate"] == pytest.approx([low, high])
    assert chief["fine_schedule"] == [best["schedule"]]
    for row in chief["trials"]:
        if row["stage"] == "fine":
            assert low <= row["learning_rate"] <= high
            assert row["schedule"] == best["schedule"]
    # the workers narrowed the same space: their fine rows say so too
    for worker in ("tuner0", "tuner1"):
        for row in reports[worker]["trials"]:
            if row["stage"] == "fine":
                assert row["schedule"] == best["schedule"]


@pytest.mark.slow
def test_each_trial_has_one_session_and_only_the_chief_the_experiment(job):
    _, log_dir, reports = job
    chief = reports["chief"]
    assert os.path.normpath(chief["log_dir"]) == os.path.normpath(log_dir)
    assert {r["log_dir"] for r in reports.values()} == {chief["log_dir"]}
    names = sorted(f"{t['stage']}-{t['trial']}" for t in chief["trials"])
    assert sorted(set(tb.runs(log_dir)) - {"search-2"}) == names
    for name in names:
        run = os.path.join(log_dir, name)
        assert len(glob.glob(os.path.join(run, "*tfevents*"))) == 1
        content = tb.load(run).PluginTagToContent("hparams")
        assert "_hparams_/experiment" not in content
        info = hparams_metadata.parse_session_start_info_plugin_data(
            content["_hparams_/session_start_info"])
        row = next(t for t in chief["trials"]
                   if f"{t['stage']}-{t['trial']}" == name)
        assert info.hparams["learning_rate"].number_value == pytest.approx(
            row["learning_rate"])
    top = glob.glob(os.path.join(log_dir, "*tfevents*"))
    assert len(top) == 1
    experiment = hparams_metadata.parse_experiment_plugin_data(
        tb.load(log_dir).PluginTagToContent("hparams")["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.metric_infos} >= {
        "score", "val_accuracy", "loss"}


@pytest.mark.slow
def test_a_second_job_into_the_same_log_dir_gets_its_own_folder(job):
    tmp_path, log_dir, first = job
    second = run_job(tmp_path, "second", log_dir)
    folder = os.path.join(log_dir, "search-2")
    # the chief chose the folder; both workers wrote their sessions there
    assert {os.path.normpath(r["log_dir"]) for r in second.values()} == {
        os.path.normpath(folder)}
    names = sorted(f"{t['stage']}-{t['trial']}"
                   for t in second["chief"]["trials"])
    assert tb.runs(folder) == names
    for name in names:  # one session each: the second job's
        run = os.path.join(folder, name)
        assert len(glob.glob(os.path.join(run, "*tfevents*"))) == 1
        score = tb.scalars(run, "score")
        row = next(t for t in second["chief"]["trials"]
                   if f"{t['stage']}-{t['trial']}" == name)
        assert [v for _, v in score] == pytest.approx([row["score"]])
    # the first job's sessions are untouched
    assert sorted(set(tb.runs(log_dir)) - {"search-2"}) == sorted(
        f"{t['stage']}-{t['trial']}" for t in first["chief"]["trials"])
