"""Type hints on the public API (issue 23): every signature is annotated.

For each public name, every public function, method and property, `__init__`
and `__call__` included, has an annotation on each parameter (except `self`
and `cls`) and on its return, and `typing.get_type_hints` resolves them all:
a misspelt forward reference fails here, not in a user's type checker.
"""

import importlib
import inspect
import os
import typing

import pytest

import keras_trainopt

# Names of `keras_trainopt.__all__` whose signatures are not annotated yet
# (none now: every public name is). Keep it empty.
NOT_YET: set[str] = set()

# Public names outside `keras_trainopt.__all__` held to the same rule:
# extend this list as more of the API is annotated.
MORE = [
    "keras_trainopt.schedules.ContinuousDecaySchedule",
    "keras_trainopt.schedules.DecaySchedule",
    "keras_trainopt.schedules.formulas.cyclic_cosine",
    "keras_trainopt.schedules.formulas.exponential_decay",
    "keras_trainopt.schedules.formulas.inverse_time_decay",
    "keras_trainopt.schedules.formulas.linear_cycle",
    "keras_trainopt.schedules.formulas.staircase_time",
    "keras_trainopt.schedules.formulas.step_decay",
    "keras_trainopt.schedules.formulas.warmup_then_decay",
    "keras_trainopt.tuning.search_result.format_value",
    "keras_trainopt.tuning.search_result.row_config",
    "keras_trainopt.tuning.search_result.unsettled_warnings",
    "keras_trainopt.tuning.search_space.default_knobs",
    "keras_trainopt.tuning.search_space.knob_scale",
    "keras_trainopt.tuning.search_space.knob_table",
    "keras_trainopt.tuning.search_space.relative_position",
    "keras_trainopt.tuning.search_space.zoom_range",
]

# Modules the annotations name but import only under `typing.TYPE_CHECKING`
# (so that importing keras_trainopt does not load them): supplied here so
# that `get_type_hints` can resolve those annotations.
TYPE_CHECKING_ONLY = {"keras_tuner": "keras_tuner", "matplotlib": "matplotlib.axes"}

# Mixins in `_internal` are machinery, not API: their methods are not checked.
_INTERNAL = "keras_trainopt._internal"
_DUNDERS = ("__init__", "__call__")


def _namespace():
    names = {}
    for name, module in TYPE_CHECKING_ONLY.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue  # its annotations are skipped below
        names[name] = importlib.import_module(name)
    return names


def _resolve(path):
    if "." not in path:
        return getattr(keras_trainopt, path)
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _callables(obj):
    """`{qualified name: function}` of what `obj` offers publicly."""
    if not inspect.isclass(obj):
        return {obj.__qualname__: obj}
    found = {}
    for klass in obj.__mro__:
        module = getattr(klass, "__module__", "")
        if not module.startswith("keras_trainopt.") or module.startswith(
            _INTERNAL
        ):
            continue  # Keras', Python's or internal: not ours to annotate
        for name, attr in vars(klass).items():
            if name in found or (name.startswith("_") and name not in _DUNDERS):
                continue
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            elif isinstance(attr, property):
                attr = attr.fget
            if inspect.isfunction(attr) and attr.__module__.startswith(
                "keras_trainopt."
            ):  # not Keras' own no-op hook, kept under our name
                found[name] = attr
    return {f"{obj.__name__}.{name}": fn for name, fn in sorted(found.items())}


def _missing(fn, namespace):
    """What of `fn`'s signature lacks an annotation, or fails to resolve."""
    signature = inspect.signature(fn)
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls")
        and parameter.annotation is inspect.Parameter.empty
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    try:
        hints = typing.get_type_hints(fn, localns=namespace)
    except NameError as error:
        if error.name in TYPE_CHECKING_ONLY and error.name not in namespace:
            pytest.skip(f"{error.name} is not installed")
        return missing + [f"unresolved: {error}"]
    unresolved = [
        name
        for name in [*signature.parameters, "return"]
        if name not in ("self", "cls") and name not in missing
        and name not in hints
    ]
    return missing + [f"unresolved: {name}" for name in unresolved]


ANNOTATED = sorted(set(keras_trainopt.__all__) - NOT_YET)


@pytest.mark.parametrize("path", ANNOTATED + MORE)
def test_public_signatures_are_annotated(path):
    namespace = _namespace()
    callables = _callables(_resolve(path))
    assert callables, f"{path}: nothing to check"
    problems = {
        name: missing
        for name, fn in callables.items()
        if (missing := _missing(fn, namespace))
    }
    assert not problems, f"{path}: annotations missing or unresolved: {problems}"


def test_every_exported_name_is_checked():
    # a new public name is annotated, or the check above fails for it
    assert not NOT_YET, f"annotate these public names: {sorted(NOT_YET)}"
    assert set(ANNOTATED) == set(keras_trainopt.__all__)


def test_the_check_sees_an_unannotated_hook():
    class Partly:
        def on_epoch_end(self, epoch: int, logs=None):
            pass

    assert _missing(Partly.on_epoch_end, {}) == ["logs", "return"]


def test_literal_types_match_the_accepted_values():
    from keras_trainopt.callbacks import _decay_callback
    from keras_trainopt.tuning import lr_finder
    from keras_trainopt.tuning import suggestions

    assert typing.get_args(_decay_callback.Unit) == (
        _decay_callback.DecayCallback.UNITS
    )
    assert set(typing.get_args(lr_finder.Rule)) == set(suggestions.RULES)


@pytest.mark.slow  # a new Python importing TensorFlow: ~10-20 s
def test_type_checking_imports_stay_lazy():
    """The annotated tuning modules import no keras-tuner for annotations."""
    from tests.test_package import _loaded_by

    loaded, _ = _loaded_by(
        "import keras_trainopt.tuning.hyperparameter_config\n"
        "import keras_trainopt.tuning.lr_finder\n"
        "import keras_trainopt.tuning.search_result\n"
        "import keras_trainopt.tuning.search_space\n",
        os.environ.get("KERAS_BACKEND", "tensorflow"),
    )
    assert "keras_tuner" not in loaded
