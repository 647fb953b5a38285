"""The public surface: exports, docstrings, the command line."""

import inspect

import pytest

import keras_trainopt


def test_all_names_exported_and_documented():
    assert sorted(keras_trainopt.__all__) == keras_trainopt.__all__
    for name in keras_trainopt.__all__:
        obj = getattr(keras_trainopt, name)
        doc = inspect.getdoc(obj) or ""
        summary = doc.splitlines()[0] if doc else ""
        assert summary.endswith("."), f"{name}: one-line summary missing"
        assert ">>>" in doc, f"{name}: no runnable example in the docstring"
        assert "Args:" in doc, f"{name}: no Args section"
        assert "Reference" in doc, f"{name}: no reference"


SUBPACKAGES = ("averaging", "callbacks", "diagnostics", "ensembles",
               "optimizers", "reporting", "schedules", "tuning")


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_subpackage_name_is_documented(package):
    import importlib

    module = importlib.import_module(f"keras_trainopt.{package}")
    assert sorted(module.__all__) == list(module.__all__), package
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            assert (inspect.getdoc(obj) or "").strip(), f"{package}.{name}"
            continue
        doc = inspect.getdoc(obj) or ""
        where = f"{package}.{name}"
        assert doc.splitlines()[0].endswith("."), f"{where}: no summary"
        assert ">>>" in doc, f"{where}: no runnable example"
        assert "Args:" in doc, f"{where}: no Args section"
        assert "Reference" in doc, f"{where}: no reference"


def test_cli_rejects_bad_flags(capsys):
    from keras_trainopt import cli

    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "must be >= 1" in capsys.readouterr().err
