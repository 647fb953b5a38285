"""Root conftest: doctests and the docs' code blocks, run as users run them."""

import importlib.util
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's libraries log through absl before they read
# TF_CPP_MIN_LOG_LEVEL ("Could not find cuda drivers"); imported here, under
# the CLI's filter, those lines do not end the test run's output (pytest
# hands back what it captured while collecting once the session ends).
if importlib.util.find_spec("tensorflow") is not None:
    from keras_trainopt.cli import _without_native_logs

    with _without_native_logs():
        import tensorflow  # noqa: F401

# The backend-only modules import their backend, which an install for
# another backend need not have; their doctests are collected where it is.
collect_ignore = [
    f"keras_trainopt/_internal/{module}_ops.py"
    for module, package in (
        ("torch", "torch"), ("tf", "tensorflow"), ("jax", "jax"))
    if importlib.util.find_spec(package) is None
]


def pytest_collect_file(file_path, parent):
    """Collects the ```python blocks of the Markdown files as tests.

    pytest-markdown-docs does the parsing and the running; it is enabled
    here for Markdown files only. Its `--markdown-docs` switch would also
    import every `.py` file, scripts such as `keras_trainopt/__main__.py`
    included, to look for code blocks in docstrings, which the doctests
    already run.
    """
    if file_path.suffix != ".md":
        return None
    try:
        from pytest_markdown_docs.plugin import MarkdownTextFile
    except ImportError:  # an environment without the [test] extra
        return None

    class MarkdownFile(MarkdownTextFile):
        def collect(self):
            for item in super().collect():
                if any(call in item.code for call in SLOW_CALLS):
                    item.add_marker(pytest.mark.slow)
                yield item

    return MarkdownFile.from_parent(parent, path=file_path)


# A code block or docstring example that calls one of these runs under
# `-m slow` (in `.ci/run`), not in the default run: a search trains a dozen
# models (10-20 s a block); tests/tuning runs a small search by default.
SLOW_CALLS = ("search_hyperparameters(",)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items):
    """Marks the docstring examples that call one of `SLOW_CALLS` slow."""
    for item in items:
        examples = getattr(getattr(item, "dtest", None), "examples", ())
        if any(call in example.source for example in examples
               for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _code_blocks_run_in_a_fresh_folder(request):
    """Each ```python block of README.md and docs/ runs in an empty folder.

    The blocks write what a user's run writes (`runs/...`, a search folder);
    here that lands in the test's own temporary folder, not the checkout.
    """
    if request.node.get_closest_marker("markdown-docs") is None:
        yield
        return
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    yield
