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


def test_diagnostics_functions_have_examples():
    from keras_trainopt import diagnostics

    for name in diagnostics.__all__:
        obj = getattr(diagnostics, name)
        if inspect.isfunction(obj):
            assert ">>>" in (inspect.getdoc(obj) or ""), name


def test_cli_rejects_bad_flags(capsys):
    from keras_trainopt import cli

    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "must be >= 1" in capsys.readouterr().err
