"""The public surface: exports, docstrings, the command line."""

import inspect
import os

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


# -- installing and importing (issue 23) -------------------------------------

LAZY_PACKAGES = ("keras_trainopt", "keras_trainopt.reporting",
                 "keras_trainopt.tuning")
OPTIONAL = {"keras_tuner", "matplotlib", "sklearn"}


def _loaded_by(code, backend):
    """Top-level modules in `sys.modules` after `code`, in a new Python.

    Returns `(loaded, added)`: all of them, and those that came after `code`
    set `before` (a set of module names; all of them if it sets none).
    """
    import json
    import subprocess
    import sys

    script = code + (
        "\nimport json, sys"
        "\ntop = lambda names: sorted({m.split('.')[0] for m in names})"
        "\nbefore = globals().get('before', set())"
        "\nprint(json.dumps([top(sys.modules),"
        " top(set(sys.modules) - before)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True,
        env=dict(os.environ, KERAS_BACKEND=backend), timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded, added = json.loads(done.stdout.splitlines()[-1])
    return set(loaded), set(added)


def test_import_loads_no_backend_and_no_optional_dependency():
    # before: `import keras_trainopt` imported Keras (so its backend),
    # keras-tuner and, through them, matplotlib and scikit-learn
    loaded, _ = _loaded_by("import keras_trainopt", "jax")
    assert not loaded & ({"keras", "tensorflow", "jax", "torch"} | OPTIONAL)


@pytest.mark.slow  # a new Python with a backend per case: 10-30 s
@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_public_names_load_no_optional_dependency(backend):
    # Keras itself imports matplotlib and scikit-learn when they are
    # installed, so what counts is what the library adds to `import keras`.
    pytest.importorskip(backend)
    code = (
        "import sys\nimport keras\nbefore = set(sys.modules)\n"
        "import keras_trainopt as kt\n"
        "for name in kt.__all__:\n"
        "    if name != 'search_hyperparameters':\n"
        "        getattr(kt, name)\n"
    )
    loaded, added = _loaded_by(code, backend)
    assert "keras_trainopt" in added
    assert not added & (OPTIONAL | {"tensorflow"})
    if backend != "tensorflow":
        assert "tensorflow" not in loaded


@pytest.mark.slow  # a new Python with a backend per case: 10-30 s
def test_the_range_test_and_the_space_need_no_keras_tuner():
    code = (
        "import sys\nsys.modules['keras_tuner'] = None  # not installed\n"
        "import keras_trainopt as kt\n"
        "kt.find_learning_rate, kt.SearchSpace, kt.HyperparameterConfig\n"
        "try:\n"
        "    kt.search_hyperparameters\n"
        "except ImportError as error:\n"
        "    assert \"pip install 'keras-trainopt[tune]'\" in str(error), error\n"
        "else:\n"
        "    raise AssertionError('search_hyperparameters imported')\n"
    )
    _loaded_by(code, os.environ.get("KERAS_BACKEND", "tensorflow"))


def _type_checking_imports(package):
    """`{name: module}` of the imports under `if typing.TYPE_CHECKING:`."""
    import ast

    tree = ast.parse(inspect.getsource(package))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
            node.test
        ):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    found[alias.name] = statement.module
    return found


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_lazy_exports_agree_with_all_and_type_checking_imports(name):
    import importlib

    package = importlib.import_module(name)
    declared = _type_checking_imports(package)
    eager = set(package.__all__) - set(declared)
    for export in eager:  # imported at the top, not lazily (a submodule)
        assert export in vars(package), f"{name}.{export}"
    for export, module in declared.items():
        assert export in package.__all__, f"{name}.{export} not in __all__"
        # the lazy lookup itself, even once the name is cached
        assert package.__getattr__(export) is getattr(
            importlib.import_module(module), export
        ), f"{name}.{export}"
    listed = set(package.__dir__())
    assert set(package.__all__) <= listed
    assert listed - set(vars(package)) <= set(package.__all__)


def test_star_import_and_unknown_names():
    namespace = {}
    exec("from keras_trainopt import *", namespace)
    assert set(keras_trainopt.__all__) <= set(namespace)
    assert not hasattr(keras_trainopt, "Nesterov")
    with pytest.raises(AttributeError,
                       match="module 'keras_trainopt' has no attribute 'X'"):
        keras_trainopt.X  # noqa: B018


def test_the_version_is_a_literal_setuptools_reads_without_importing():
    # pyproject.toml: version = {attr = "keras_trainopt.__version__"};
    # setuptools reads a plain string assignment statically, so building
    # the package imports neither it nor Keras
    import ast
    import importlib.metadata

    tree = ast.parse(inspect.getsource(keras_trainopt))
    (value,) = [node.value for node in tree.body
                if isinstance(node, ast.Assign)
                and [ast.unparse(t) for t in node.targets] == ["__version__"]]
    assert isinstance(value, ast.Constant) and isinstance(value.value, str)
    assert keras_trainopt.__version__ == importlib.metadata.version(
        "keras-trainopt")
