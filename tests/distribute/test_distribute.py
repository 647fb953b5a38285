"""The callbacks under `tf.distribute`: same results as one device, and only
the chief writes files.

Each scenario runs in fresh processes (`scenarios.py`): logical devices and
a multi-worker cluster must be set up before TensorFlow initializes. One
local process trains every case on one device (the reference), under
`MirroredStrategy` on two logical CPUs, and under `OneDeviceStrategy` with
XLA (`jit_compile=True`, the TPU code paths); two worker processes on
127.0.0.1 train under `MultiWorkerMirroredStrategy` (`TF_CONFIG`, tasks 0
and 1), at the same time as the local one.

Tolerance: everything equals the single-device run within 1e-6 (absolute),
and integers (steps, counts, snapshot steps) exactly. Bit-for-bit equality
is impossible, for two reasons measured on this model: a replica computes
the forward and backward pass on its 8 rows instead of 16, and the CPU
matmul kernel sums the inner dimension in an order that depends on the
matrix shapes (rows 0-7 of `x[:16] @ w` and of `x[:8] @ w` differ by up to
1e-6 for these shapes); and the gradient's sum over the batch becomes two
partial sums of 8 rows, added by the all-reduce. (With a global batch
of 2, one row per replica, the weights differ by 4e-6 after 2 epochs: the
kernels' summation order changes with the batch shape, not just the
all-reduce.) After the 16 steps of these runs the weights and averages
differ by at most 2.2e-7. The batch losses that `LossMonitor` reads differ
by up to 4.8e-7: each is a difference of two values of Keras' float32
running loss total (about 100 at an epoch's end, where the last bit is
7.6e-6) divided by the 16 rows of a batch, so a last-bit difference in the
total shows as 4.8e-7. The two workers of the multi-worker run hold the
same weights bit for bit (the all-reduce hands both the same sums).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")  # the scenarios run tf.distribute strategies

pytestmark = pytest.mark.slow

from tests import tb  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ATOL = 1e-6
TIMEOUT = 300  # seconds for all processes of one scenario set

# The whole file is `slow` (separate processes, 1-2 minutes for the first
# cases alone); `.ci/run` runs every case. The first cases' processes start
# together (`runs`), the other cases' (`slow_runs`) only when asked for.
LOCAL_CASES = ("averages", "ensemble")
WORKER_CASES = ("ensemble",)
SLOW_LOCAL_CASES = ("epoch_decay", "swa_rate")
SLOW_WORKER_CASES = ("averages", "epoch_decay", "swa_rate")


# -- running the scenarios -----------------------------------------------------


def free_ports(n):
    """`n` free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)
               for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Process:
    """One scenario process, with its own empty temporary folder."""

    def __init__(self, name, argv, tmpdir, tf_config=None):
        self.name = name
        self.tmpdir = tmpdir
        os.makedirs(tmpdir)
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        env.update(TMPDIR=tmpdir, TF_CPP_MIN_LOG_LEVEL="2",
                   KERAS_BACKEND="tensorflow", PYTHONHASHSEED="0")
        if tf_config is not None:
            env["TF_CONFIG"] = json.dumps(tf_config)
        self.log_path = tmpdir + ".log"
        self._log = open(self.log_path, "w")
        # A session of its own: on a timeout the process and anything it
        # started are killed together.
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.distribute.scenarios", *argv],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.returncode = None
        self.failure = None

    def kill(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()

    def output_tail(self, lines=40):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-lines:])


def run_processes(processes, timeout, groups):
    """Waits for all the processes, killing them all on a timeout.

    `groups` are names of processes that need each other (the workers of a
    cluster): when one fails, the others would wait for it forever, so they
    are killed at once. Whatever happens, no process is left running.
    """
    deadline = time.monotonic() + timeout
    by_name = {p.name: p for p in processes}
    try:
        while any(p.popen.poll() is None for p in processes):
            if time.monotonic() > deadline:
                for process in processes:
                    if process.popen.poll() is None:
                        process.failure = f"still running after {timeout} s"
                break
            for group in groups:
                failed = [n for n in group if by_name[n].popen.poll()]
                for name in group:
                    peer = by_name[name]
                    if failed and peer.popen.poll() is None:
                        peer.failure = f"killed: {failed[0]} failed"
                        peer.kill()
            time.sleep(0.2)
    finally:
        for process in processes:
            process.kill()
            process._log.close()
            process.returncode = process.popen.returncode


class Runs:
    """The outputs of one set of scenario processes, started together."""

    def __init__(self, base, local_cases, worker_cases, timeout=TIMEOUT):
        self.out = os.path.join(base, "out")
        self.processes = {}
        start = time.monotonic()
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        for index in range(2):
            name = f"worker{index}"
            self.processes[name] = Process(
                name, ["worker", self.out, *worker_cases],
                os.path.join(base, f"tmp_{name}"),
                tf_config={"cluster": cluster,
                           "task": {"type": "worker", "index": index}},
            )
        self.processes["local"] = Process(
            "local", ["local", self.out, *local_cases],
            os.path.join(base, "tmp_local"),
        )
        run_processes(list(self.processes.values()), timeout,
                      groups=[("worker0", "worker1")])
        self.seconds = time.monotonic() - start
        print(f"\ntf.distribute scenarios {local_cases} / {worker_cases}: "
              f"{self.seconds:.0f} s")

    def require(self, *names):
        """Fails unless the processes `names` exited with 0."""
        for name in names:
            process = self.processes[name]
            assert process.failure is None and process.returncode == 0, (
                f"{name}: {process.failure or 'failed'} (exit code "
                f"{process.returncode}); its output ends with:\n"
                + process.output_tail()
            )

    def load(self, mode, case):
        self.require("local" if mode in ("single", "mirrored", "xla")
                     else mode)
        folder = os.path.join(self.out, mode)
        with np.load(os.path.join(folder, f"{case}.npz")) as npz:
            arrays = dict(npz)
        with open(os.path.join(folder, f"{case}.json")) as f:
            facts = json.load(f)
        return arrays, facts

    def workdir(self, mode, case):
        return os.path.join(self.out, mode, case)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return Runs(str(tmp_path_factory.mktemp("distribute")), LOCAL_CASES,
                WORKER_CASES)


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory):
    return Runs(str(tmp_path_factory.mktemp("distribute_slow")),
                SLOW_LOCAL_CASES, SLOW_WORKER_CASES)


def runs_for(request, case, cases):
    fixture = "runs" if case in cases else "slow_runs"
    return request.getfixturevalue(fixture)


def single_device_run(request, case):
    """The reference: `case` trained on one device (the local process)."""
    return runs_for(request, case, LOCAL_CASES).load("single", case)


# -- comparing -----------------------------------------------------------------

# facts compared as floats within ATOL, and compared exactly
FLOAT_FACTS = ("rates", "loss_losses", "loss_rates", "fit_gaps",
               "doctor_loss_losses", "doctor_loss_rates", "doctor_fit_gaps")
EXACT_FACTS = ("iterations", "ema_num_averaged", "swa_num_averaged",
               "snapshot_steps", "checkpoints_steps", "loss_steps",
               "loss_diagnosis", "fit_diagnosis", "fit_best_epoch",
               "ratio_steps", "doctor_loss_steps", "doctor_loss_diagnosis",
               "doctor_fit_diagnosis", "doctor_fit_best_epoch",
               "doctor_ratio_steps", "doctor_advice")


def assert_same_run(reference, other, *, ignore_arrays=()):
    """`other` equals `reference` within ATOL; returns max |diff| by quantity."""
    (ref_arrays, ref_facts), (arrays, facts) = reference, other
    keys = {k for k in ref_arrays if not k.startswith(ignore_arrays)}
    assert keys == {k for k in arrays if not k.startswith(ignore_arrays)}
    diffs = {}
    for key in sorted(keys):
        np.testing.assert_allclose(arrays[key], ref_arrays[key], rtol=0,
                                   atol=ATOL, err_msg=key)
        quantity = key.split("/")[0]
        diff = float(np.max(np.abs(arrays[key] - ref_arrays[key]), initial=0))
        diffs[quantity] = max(diffs.get(quantity, 0.0), diff)
    for key in EXACT_FACTS:
        if key in ref_facts:
            assert facts[key] == ref_facts[key], key
    for key in FLOAT_FACTS:
        if key in ref_facts:
            np.testing.assert_allclose(facts[key], ref_facts[key], rtol=0,
                                       atol=ATOL, err_msg=key)
            diffs[key] = _max_diff(facts[key], ref_facts[key])
    for metric, values in ref_facts["history"].items():
        np.testing.assert_allclose(facts["history"][metric], values, rtol=0,
                                   atol=ATOL, err_msg=f"history {metric}")
        diffs[f"history/{metric}"] = _max_diff(facts["history"][metric], values)
    for prefix in ("", "doctor_"):
        key = prefix + "ratio_values"
        if key in ref_facts:
            assert facts[key].keys() == ref_facts[key].keys()
            for weight, values in ref_facts[key].items():
                np.testing.assert_allclose(facts[key][weight], values, rtol=0,
                                           atol=ATOL, err_msg=weight)
                diffs[key] = max(diffs.get(key, 0.0),
                                 _max_diff(facts[key][weight], values))
    stats = ref_facts.get("doctor_activation_stats")
    if stats:
        for layer, values in stats.items():
            for name, value in values.items():
                got = facts["doctor_activation_stats"][layer][name]
                assert (got is None) == (value is None), (layer, name)
                if value is not None:
                    assert abs(got - value) <= ATOL, (layer, name, got, value)
    return diffs


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)),
                        initial=0))


def report(name, diffs):
    """The largest differences, printed for `pytest -s`."""
    shown = ", ".join(f"{k} {v:.1e}" for k, v in sorted(diffs.items()))
    print(f"\n{name}: max |diff| {shown}")


# -- MirroredStrategy, and XLA (TPU code paths) ----------------------------------


@pytest.mark.parametrize("case", [
    *LOCAL_CASES,
    *[pytest.param(case, marks=pytest.mark.slow) for case in SLOW_LOCAL_CASES],
])
def test_mirrored_strategy_equals_one_device(request, case):
    runs = runs_for(request, case, LOCAL_CASES)
    reference = runs.load("single", case)
    mirrored = runs.load("mirrored", case)
    assert reference[1]["num_replicas"] == 1
    assert mirrored[1]["num_replicas"] == 2
    # every variable used in the step made in the strategy's scope
    assert mirrored[1]["variable_kinds"] == ["MirroredVariable"]
    report(f"mirrored {case}", assert_same_run(reference, mirrored))
    # the callbacks wrote the same files as on one device, and no
    # temporary ones (the process's temporary folder stays empty)
    assert ([f.split("events.out")[0] for f in mirrored[1]["files"]]
            == [f.split("events.out")[0] for f in reference[1]["files"]])
    assert mirrored[1]["tempdir"] == runs.processes["local"].tmpdir
    assert os.listdir(runs.processes["local"].tmpdir) == []


@pytest.mark.parametrize("case", [
    *LOCAL_CASES,
    *[pytest.param(case, marks=pytest.mark.slow) for case in SLOW_LOCAL_CASES],
])
def test_xla_replica_step_equals_one_device(request, case):
    """The replica-context paths compiled by XLA (what a TPU runs): XLA
    compiles no host read or callback, so the step has none."""
    runs = runs_for(request, case, LOCAL_CASES)
    xla = runs.load("xla", case)
    assert xla[1]["jit_compile"] is True
    report(f"xla {case}", assert_same_run(runs.load("single", case), xla))


def test_tensorboard_logs_are_readable_and_equal(runs):
    """The monitors' event files, read back with TensorBoard's reader."""
    by_mode = {}
    for mode in ("single", "mirrored"):
        workdir = runs.workdir(mode, "ensemble")
        for run in ("logs", "logs_standalone"):
            assert tb.runs(os.path.join(workdir, run)) == ["monitors"]
        standalone = os.path.join(workdir, "logs_standalone", "monitors")
        doctor = os.path.join(workdir, "logs", "monitors")
        tags = tb.tags(standalone)
        assert {"loss_monitor/batch_loss", "loss_monitor/learning_rate",
                "generalization_gap", "update_ratio/hidden/kernel",
                "update_ratio_by_layer/out"} <= tags
        assert {"doctor/advice", "activations/hidden/std"} <= tb.tags(doctor)
        by_mode[mode] = {
            tag: tb.scalars(standalone, tag)
            for tag in ("loss_monitor/batch_loss", "generalization_gap",
                        "update_ratio/hidden/kernel")
        }
    for tag, points in by_mode["single"].items():
        steps, values = zip(*points, strict=True)
        other_steps, other_values = zip(*by_mode["mirrored"][tag], strict=True)
        assert other_steps == steps
        np.testing.assert_allclose(other_values, values, rtol=0, atol=ATOL)


# -- MultiWorkerMirroredStrategy -----------------------------------------------


@pytest.mark.parametrize("case", [
    *WORKER_CASES,
    *[pytest.param(case, marks=pytest.mark.slow)
      for case in SLOW_WORKER_CASES],
])
def test_multi_worker_equals_one_device(request, case):
    runs = runs_for(request, case, WORKER_CASES)
    runs.require("worker0", "worker1")
    reference = single_device_run(request, case)
    chief = runs.load("worker0", case)
    other = runs.load("worker1", case)
    for worker in (chief, other):
        assert worker[1]["num_replicas"] == 2
        assert worker[1]["variable_kinds"] == ["MirroredVariable"]
    report(f"worker0 {case}", assert_same_run(reference, chief))
    # worker 1 keeps its snapshots in memory but writes no file
    report(f"worker1 {case}", assert_same_run(
        reference, other, ignore_arrays=("snapshot_file", "checkpoints_file")))
    assert not [k for k in other[0] if "_file/" in k]
    # both workers hold the same weights, bit for bit
    for key, value in chief[0].items():
        if key in other[0]:
            np.testing.assert_array_equal(other[0][key], value, err_msg=key)


@pytest.mark.parametrize("case", [
    *WORKER_CASES,
    *[pytest.param(case, marks=pytest.mark.slow)
      for case in SLOW_WORKER_CASES],
])
def test_only_the_chief_writes_and_nothing_is_left_behind(request, case):
    runs = runs_for(request, case, WORKER_CASES)
    runs.require("worker0", "worker1")
    _, chief = runs.load("worker0", case)
    _, other = runs.load("worker1", case)
    # worker 1: its folder for the callbacks' files stays empty
    assert other["files"] == []
    assert os.listdir(runs.workdir("worker1", case)) == []
    assert other.get("report", None) is None
    # worker 0 wrote what one device writes
    _, single = single_device_run(request, case)
    expected = [f.split("events.out")[0] for f in single["files"]]
    if case == "ensemble":
        workdir = runs.workdir("worker0", case)
        expected = sorted(expected + ["logs/report.html"])
        assert chief["report"] == os.path.join(workdir, "logs",
                                               "report.html")
        # readable, with what the monitors and the doctor write
        assert "doctor/advice" in tb.tags(os.path.join(workdir, "logs",
                                                       "monitors"))
        assert "generalization_gap" in tb.tags(
            os.path.join(workdir, "logs_standalone", "monitors"))
    assert [f.split("events.out")[0] for f in chief["files"]] == expected
    # no temporary file or folder anywhere: not in the callbacks' folders
    # (above: only the final files, no `.partial` snapshot), not in any
    # process's temporary folder
    for name in ("worker0", "worker1"):
        assert os.listdir(runs.processes[name].tmpdir) == [], name
    assert chief["tempdir"] == runs.processes["worker0"].tmpdir
    assert other["tempdir"] == runs.processes["worker1"].tmpdir
