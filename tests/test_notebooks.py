"""The tutorial notebooks run top to bottom in a real Jupyter kernel.

Each notebook in `examples/` is executed by nbclient with the environment
variable `KERAS_TRAINOPT_SMOKE=1`, which its parameter cell reads to shrink
epochs and data. A notebook declares what it must show in its metadata,
`{"keras_trainopt": {"expect": [texts...], "min_images": n}}`: the test
checks that every text appears in the outputs and that at least `n` plots
were drawn. The layout every tutorial shares (the Colab badge, the install
cell, TensorBoard inline, no downloads) is checked without running anything.
"""

import os
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")  # the [test] extra's

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("[0-9][0-9]_*.ipynb"))
# Ways a notebook could fetch data or weights at run time: none allowed.
DOWNLOADS = ("urlopen", "requests.get", "get_file(", "fetch_openml",
             "tfds.load", "wget ", "curl ", "load_data()")


def code_cells(notebook):
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_the_four_tutorials_are_there():
    assert [path.name[:2] for path in NOTEBOOKS] == ["01", "02", "03", "04"]
    for path in NOTEBOOKS:  # and a short script version of each
        assert path.with_suffix(".py").exists(), path.with_suffix(".py").name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_layout_badge_install_tensorboard_and_no_downloads(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    # inline or reference-style badge: every Colab link opens this notebook
    opens = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+",
                       first.source)
    assert "colab-badge.svg" in first.source
    assert opens and all(link.endswith(f"/examples/{path.name}")
                         for link in opens), opens
    install = code_cells(notebook)[0]
    assert "pip install" in install and "keras-trainopt" in install
    assert re.search(r"#.*pip install .*-e ", install), "local checkout line"
    code = "\n".join(code_cells(notebook))
    assert "%load_ext tensorboard" in code and "%tensorboard --logdir" in code
    assert "KERAS_TRAINOPT_SMOKE" in code
    for word in DOWNLOADS:
        assert word not in code, f"{path.name} downloads with {word!r}"
    expect = notebook.metadata["keras_trainopt"]
    assert expect["expect"] and expect["min_images"] >= 1


def outputs_of(notebook):
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                texts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                data = output.get("data", {})
                texts.append(data.get("text/plain", ""))
                texts.append(data.get("text/markdown", ""))
                images += "image/png" in data
    return "\n".join(texts), images


@pytest.mark.slow  # a Jupyter kernel per notebook: 25-75 s each
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_in_a_jupyter_kernel(path, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")  # the tutorials run on TensorFlow
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # judge this run's outputs, not saved ones
        if cell.cell_type == "code":
            cell.outputs = []
    monkeypatch.setenv("KERAS_TRAINOPT_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell, on any error
    text, images = outputs_of(notebook)
    expect = notebook.metadata["keras_trainopt"]
    for needle in expect["expect"]:
        assert needle in text, f"{path.name}: no output contains {needle!r}"
    assert images >= expect["min_images"], f"{path.name}: {images} plots"
    assert any(name.startswith("events.out.tfevents")
               for _, _, names in os.walk(tmp_path) for name in names)
