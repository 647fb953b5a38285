"""The command line, called in-process through `main(argv)`."""

import os
import subprocess
import sys

import pytest

from keras_trainopt.cli import main
from keras_trainopt.reporting import close_run
from keras_trainopt.reporting import open_run


def some_logs(log_dir):
    writer = open_run(str(log_dir), "monitors")
    writer.scalars("loss_monitor/batch_loss", range(20),
                   [1.0 / (step + 1) for step in range(20)])
    writer.text("doctor/advice", "- **ok**: all healthy", 0)
    close_run(writer)


def test_report_writes_the_html_and_prints_its_path(tmp_path, capsys):
    some_logs(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    path = tmp_path / "report.html"
    assert capsys.readouterr().out.strip() == str(path)
    page = path.read_text(encoding="utf-8")
    assert "all healthy" in page and "data:image/png;base64," in page


def test_report_output_option(tmp_path, capsys):
    some_logs(tmp_path / "logs")
    output = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(tmp_path / "logs"), "-o", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    assert output.exists() and not (tmp_path / "logs" / "report.html").exists()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_report_on_a_bad_logdir_exits_2_with_one_line(tmp_path, capsys, make):
    log_dir = tmp_path / "logs"
    if make == "empty":
        log_dir.mkdir()
    assert main(["report", str(log_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "keras-trainopt report: error: LOGDIR must")
    assert str(log_dir) in lines[0]


def test_report_needs_a_logdir(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report"])
    assert exit_info.value.code == 2
    assert "LOGDIR" in capsys.readouterr().err



@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"],
                                  ["report", "--help"], ["demo", "--epochs=0"],
                                  []])
def test_help_and_usage_errors_import_no_keras(argv):
    # before: `keras-trainopt --help` imported Keras and TensorFlow (4 s and
    # TensorFlow's C++ log lines); the run's own import log says what loads
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_trainopt", *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == (0 if "--help" in argv else 2), done.stderr
    assert "usage: keras-trainopt" in done.stdout + done.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "keras_trainopt" in imported  # the log is read right
    assert not imported & {"keras", "tensorflow", "jax", "torch", "numpy",
                           "tensorboard", "keras_tuner", "matplotlib"}


def test_native_log_lines_are_dropped_and_the_rest_passed_on(capfd):
    from keras_trainopt.cli import _without_native_logs

    with _without_native_logs():
        for line in [
            ("WARNING: All log messages before absl::InitializeLog() is "
             "called are written to STDERR"),
            ("I0000 00:00:1796555070.629229   32293 cudart_stub.cc:31] Could "
             "not find cuda drivers on your machine, GPU will not be used."),
            ("E0000 00:00:1796555076.858345   32293 cuda_platform.cc:52] "
             "failed call to cuInit: INTERNAL: CUDA error"),
            "W1206 11:01:25.123456    4242 some_file.cc:7] a warning",
            "UserWarning: a Python warning stays",
        ]:
            os.write(2, (line + "\n").encode())
    captured = capfd.readouterr()
    assert captured.err == "UserWarning: a Python warning stays\n"
