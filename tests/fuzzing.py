"""Strategies and the contract of the property-based fuzz tests (issue 7).

The contract every public constructor and function keeps: called with any
mix of plausible and hostile arguments, it either works (and its config, if
it has one, rebuilds an equal object), or it raises `ValueError`/`TypeError`
whose message names, in backticks, an argument that was passed with a
non-default value. Any other exception type escapes the check and fails.
"""

import atexit
import collections
import contextlib
import copy
import dataclasses
import inspect
import itertools
import math
import os
import pathlib
import random
import re
import shutil
import tempfile

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

NAN = float("nan")
INF = float("inf")


class Opaque:
    """A plain object that is nothing in particular."""

    def __repr__(self):
        return "Opaque()"


def _function():
    return None


# Hostile values for any argument: every type a user may pass by mistake.
# Mutable ones are copied per draw (see `hostile`), so that an object mutated
# by one call cannot leak into the next example.
HOSTILE = (
    None, True, False, 0, 1, -1, 2, -0.0, 0.5, -0.5, 1.5, 1e-320, 1e308,
    -1e308, 10**30, -(10**30), 2**63, NAN, INF, -INF, 1j, "", "0.1", "1",
    "abc", "epoch", b"bytes", [], [0.1, 0.2], [1, 2, 3], ["a"], (), (0.5,),
    (0.5, 0.1), (1, 2, 3), {}, {"a": 1}, {"learning_rate": 0.1}, {1, 2},
    np.float32(0.5), np.float64(NAN), np.float32(INF), np.float16(1e4),
    np.int64(3), np.int64(-2), np.int32(0), np.uint8(255), np.bool_(True),
    np.array(0.5), np.array([1.0, 2.0]), np.array([NAN]), np.zeros((2, 0)),
    np.array(["a"]), Opaque(), Opaque, _function, print,
)

# For the "default or not" test of an argument's value.
_MISSING = object()


def _fresh(value):
    """A copy of the containers and arrays in `value`; other objects (models,
    functions) are shared."""
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if type(value) is tuple:
        return tuple(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, set):
        return set(value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def hostile():
    """Any value of any type, mostly wrong for the argument at hand."""
    return st.one_of(
        st.sampled_from(range(len(HOSTILE))).map(lambda i: _fresh(HOSTILE[i])),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),
        st.text(max_size=4),
    )


def mix(plausible, hostile_share=4):
    """Mostly `plausible` values, one draw in `hostile_share` from `hostile()`."""
    choices = [plausible] * (hostile_share - 1) + [hostile()]
    return st.sampled_from(range(len(choices))).flatmap(lambda i: choices[i])


def reals(low, high, *edges, share=4):
    """Plausible numbers: uniform in [low, high] (valid and not) and edges."""
    return mix(
        st.one_of(
            st.floats(low, high),
            st.sampled_from(tuple(edges) + (low, high)),
        ),
        share,
    )


def ints(low, high, *edges, share=4):
    return mix(
        st.one_of(st.integers(low, high), st.sampled_from(tuple(edges) + (low, high))),
        share,
    )


def bools(share=4):
    return mix(st.booleans(), share)


def choices(*valid, share=4):
    """Valid choices and near misses (an unknown name, wrong case)."""
    near = ("bogus", str(valid[0]).upper(), str(valid[0]) + " ")
    return mix(st.sampled_from(tuple(valid) + near), share)


def optional(strategy):
    """`None` (a valid value here) or `strategy`."""
    return st.one_of(st.none(), strategy)


def values(*plausible, share=4):
    """One of the given values (a copy per draw), or a hostile one."""
    return mix(
        st.sampled_from(range(len(plausible))).map(
            lambda i: _fresh(plausible[i])
        ),
        share,
    )


def built(*factories, share=4):
    """The result of one of the given zero-argument factories, or hostile."""
    return mix(
        st.sampled_from(range(len(factories))).map(
            lambda i: _keeping_random_state(factories[i])),
        share,
    )


def _keeping_random_state(factory):
    """`factory()`, with Python's `random` state as it was before.

    Keras draws from `random` for the seeds of unseeded initializers; inside
    a strategy that makes hypothesis' draws depend on it (a
    HypothesisDeprecationWarning), so the state is put back.
    """
    state = random.getstate()
    try:
        return factory()
    finally:
        random.setstate(state)


# Drawn for an argument: leave it out of the call.
OMIT = Opaque()


def rarely(strategy, share=4):
    """For an argument that is always refused (an unknown keyword): drawn
    one time in `share`, left out otherwise, so that most calls can work."""
    choices = [st.just(OMIT)] * (share - 1) + [strategy]
    return st.sampled_from(range(share)).flatmap(lambda i: choices[i])


def anything():
    """The strategy of a parameter no spec names: small values of all types."""
    return mix(st.sampled_from([None, 0, 1, 2, 0.5, 0.1, True, False, "x"]))


# -- temporary paths ----------------------------------------------------------

_ROOT = []
_COUNTER = itertools.count()


def tmp_root():
    """One temporary folder for all fuzz paths of the session, removed at exit."""
    if not _ROOT:
        root = pathlib.Path(tempfile.mkdtemp(prefix="keras_trainopt_fuzz_"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _ROOT.append(root)
    return _ROOT[0]


def fresh_dir():
    """A new, empty folder under `tmp_root()`."""
    path = tmp_root() / f"d{next(_COUNTER)}"
    path.mkdir()
    return path


@contextlib.contextmanager
def in_fresh_cwd():
    """Runs in a new temporary working folder: strings drawn as paths are
    relative ones, and whatever a call creates there is removed at exit."""
    previous = os.getcwd()
    os.chdir(fresh_dir())
    try:
        yield
    finally:
        os.chdir(previous)


def existing_file():
    """A path to an existing file (not a folder)."""
    path = fresh_dir() / "file.txt"
    path.write_text("not a folder")
    return path


def paths(allow_none=True, share=4):
    """Folder paths: new ones (str or Path), odd ones, and hostile values."""
    plausible = [
        lambda: str(fresh_dir() / "logs"),
        lambda: fresh_dir() / "nested" / "logs",
        lambda: str(fresh_dir()),
        lambda: "",
        lambda: str(existing_file()),
        lambda: os.fsencode(str(fresh_dir())),
    ]
    strategy = built(*plausible, share=share)
    return optional(strategy) if allow_none else strategy


# -- the contract -------------------------------------------------------------

ACCEPTED = "accepted"
REJECTED = "rejected"


def signature_parameters(target):
    """`{name: inspect.Parameter}` of the named parameters of `target`."""
    parameters = inspect.signature(target).parameters
    return {
        name: p
        for name, p in parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def accepts_var_keyword(target):
    return any(
        p.kind is p.VAR_KEYWORD
        for p in inspect.signature(target).parameters.values()
    )


@st.composite
def calls(draw, target, params, fixed=None, always=()):
    """Keyword arguments for `target`: required ones (and those named in
    `always`) every time, the others drawn or left at their default;
    `params` maps a name to its strategy (names outside the signature go to
    `**kwargs`)."""
    fixed = fixed or {}
    kwargs = dict(fixed)
    named = signature_parameters(target)
    for name, parameter in named.items():
        if name in fixed:
            continue
        strategy = params[name] if name in params else anything()
        required = parameter.default is parameter.empty or name in always
        if required or draw(st.booleans()):
            kwargs[name] = draw(strategy)
    for name, strategy in params.items():
        if name not in named and name not in fixed and draw(st.booleans()):
            kwargs[name] = draw(strategy)
    return {name: value for name, value in kwargs.items() if value is not OMIT}


def same(a, b):
    """Equality that takes NaN == NaN and compares containers deeply."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
        except TypeError:
            return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. objects whose == raises
        return a is b


def is_default(value, default):
    """True when `value` is the parameter's default (same type and value)."""
    if default is _MISSING or default is inspect.Parameter.empty:
        return False
    return value is default or (type(value) is type(default) and same(value, default))


def names_in(message, names):
    """The names in `names` that `message` shows in backticks (`name` or
    `name[...]` for an element)."""
    found = []
    for name in names:
        pattern = r"`" + re.escape(name) + r"(\[[^`\]]*\])*`"
        if re.search(pattern, message):
            found.append(name)
    return found


def non_default_arguments(target, kwargs, fixed=()):
    named = signature_parameters(target)
    return [
        name
        for name, value in kwargs.items()
        if name not in fixed
        and not is_default(value, named[name].default if name in named else _MISSING)
    ]


def call(target, kwargs, fixed=(), call_as=None):
    """Calls `call_as or target` with `kwargs`; checks the error contract.

    Returns `(ACCEPTED, result)` or `(REJECTED, error)`; an error of another
    type, or one whose message names no non-default argument, fails.
    """
    try:
        result = (call_as or target)(**kwargs)
    except (TypeError, ValueError) as error:
        check_error_names_argument(error, target, kwargs, fixed)
        return REJECTED, error
    return ACCEPTED, result


def check_error_names_argument(error, target, kwargs, fixed=()):
    candidates = non_default_arguments(target, kwargs, fixed)
    message = str(error)
    assert names_in(message, candidates), (
        f"{type(error).__name__} names none of the non-default arguments "
        f"{candidates} in backticks: {message!r}\nkwargs: {kwargs!r}"
    )


def check_config_round_trip(obj):
    """`type(obj).from_config(get_config())` (or `type(obj)(**config)`)
    rebuilds an object with an equal config."""
    config = obj.get_config()
    cls = type(obj)
    from_config = getattr(cls, "from_config", None)
    rebuilt = from_config(copy.deepcopy(config)) if from_config else cls(**config)
    again = rebuilt.get_config()
    assert same(again, config), f"config changed: {config!r} -> {again!r}"
    return rebuilt


class Tally:
    """Counts outcomes over the examples of one test; feeds `event`."""

    def __init__(self):
        self.counts = collections.Counter()

    def __call__(self, outcome):
        self.counts[outcome] += 1
        event(outcome)

    def check(self, *, min_accepted, min_rejected):
        total = sum(self.counts.values())
        assert self.counts[ACCEPTED] >= min_accepted, (
            f"only {self.counts[ACCEPTED]} of {total} examples were valid: "
            "the strategies must exercise the 'works' branch"
        )
        assert self.counts[REJECTED] >= min_rejected, (
            f"only {self.counts[REJECTED]} of {total} examples were rejected"
        )


@dataclasses.dataclass
class Spec:
    """How to fuzz one public name.

    Attributes:
        params: a function returning `{parameter: strategy}` (called inside
            the test, so it may build models); every named parameter of the
            target must have one.
        examples: `max_examples`; `None` (constructors and pure functions)
            for the suite's `CONSTRUCTOR_EXAMPLES`.
        fixed: a function returning arguments passed as they are (the tiny
            model and data of functions that train).
        after: `after(result, kwargs)` checks an accepted result further
            (and cleans up); it may raise the same contract errors.
        target: what `inspect.signature` reads, if not the public object
            (e.g. a concrete subclass of an abstract base).
        always_accepts: a plain record that takes any value (no rejections).
        min_accepted: the share of examples that must work (the strategies
            must exercise the "works" branch).
        always: parameters drawn in every example, never left at a default
            that would make a valid call slow (`epochs=10`).
        round_trip: check `get_config` round trips (where there is one).
    """

    params: callable
    examples: int = None
    fixed: callable = dict
    after: callable = None
    target: object = None
    always_accepts: bool = False
    round_trip: bool = True
    min_accepted: float = 0.05
    always: tuple = ()
