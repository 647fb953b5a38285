"""The command line, called in-process through `main(argv)`."""

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

