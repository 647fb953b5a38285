"""The script versions of the tutorials run, in their reduced size.

Marked `slow`: the notebooks they mirror already run in the default suite
(`test_notebooks.py`), and these add a minute to it; `.ci/run` runs them.
"""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.stem)
def test_script_runs_and_writes_tensorboard_logs(path, tmp_path):
    pytest.importorskip("tensorflow")  # the tutorials run on TensorFlow
    env = dict(os.environ, KERAS_TRAINOPT_SMOKE="1", TF_CPP_MIN_LOG_LEVEL="2",
               MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the script printed nothing"
    assert any(name.startswith("events.out.tfevents")
               for _, _, names in os.walk(tmp_path) for name in names)
