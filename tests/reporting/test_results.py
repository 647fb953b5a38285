"""`log_results`: numbers written as TensorBoard scalars, read back."""

import math
import os

import numpy as np
import pytest

from keras_trainopt.reporting import log_results
from tests import tb


def test_results_are_scalars_in_the_results_run(tmp_path):
    log_results(tmp_path, {"test_accuracy/final": 0.9625,
                           "test_accuracy/ensemble_of_5": np.float32(0.98),
                           "seconds": 12})
    assert tb.runs(str(tmp_path)) == ["results"]
    run = str(tmp_path / "results")
    assert {tag for tag in tb.tags(run) if tag.startswith("results/")} == {
        "results/test_accuracy/final",
        "results/test_accuracy/ensemble_of_5",
        "results/seconds",
    }
    assert tb.scalars(run, "results/test_accuracy/final") == [
        (0, pytest.approx(0.9625, rel=1e-6))]
    assert tb.scalars(run, "results/test_accuracy/ensemble_of_5") == [
        (0, pytest.approx(0.98, rel=1e-6))]
    assert tb.scalars(run, "results/seconds") == [(0, 12.0)]


def test_a_later_step_adds_a_point(tmp_path):
    log_results(str(tmp_path), {"test_accuracy/final": 0.5})
    log_results(str(tmp_path), {"test_accuracy/final": 0.75}, step=3)
    points = tb.scalars(str(tmp_path / "results"),
                        "results/test_accuracy/final")
    assert sorted(points) == [(0, 0.5), (3, 0.75)]


@pytest.mark.parametrize("results, error, message", [
    ([("a", 1.0)], TypeError, "`results` must be a non-empty dict of name -> "
     r"number. Received: results=\[\('a', 1.0\)\]"),
    ({}, TypeError, r"Received: results=\{\}"),
    ({1: 0.5}, TypeError, "non-empty string names"),
    ({"/": 0.5}, TypeError, "non-empty string names"),
    ({"acc": "0.9"}, TypeError, "'acc' is of type str"),
    ({"acc": True}, TypeError, "'acc' is of type bool"),
    ({"acc": math.nan}, ValueError, r"`results\['acc'\]` must be a finite "
     "number"),
])
def test_bad_results(tmp_path, results, error, message):
    with pytest.raises(error, match=message):
        log_results(str(tmp_path), results)
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_bad_log_dir_and_step(tmp_path):
    with pytest.raises(TypeError, match="Received: log_dir=None"):
        log_results(None, {"acc": 0.9})
    with pytest.raises(ValueError, match="Received: step=-1"):
        log_results(str(tmp_path), {"acc": 0.9}, step=-1)


# -- found by fuzzing (issue 7) ------------------------------------------------


def test_log_dir_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "file"
    file.write_text("")
    # before: "" wrote `results/` into the working folder; a file raised
    # NotADirectoryError
    for log_dir in ("", file):
        with pytest.raises(ValueError, match=r"`log_dir` must be"):
            log_results(log_dir, {"a": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_step_beyond_int64_is_refused(tmp_path):
    # before: protobuf's "Value out of range", naming nothing
    with pytest.raises(ValueError, match=r"`step` must be <= "):
        log_results(tmp_path, {"a": 1.0}, step=10**30)
