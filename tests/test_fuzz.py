"""Property-based fuzzing of every public constructor and function (issue 7).

Each public name (the union of the `__all__`s of `keras_trainopt` and its
subpackages) has a `Spec` in `REGISTRY`: a strategy per parameter mixing
plausible values (in and out of range) with hostile ones (NaN, inf, bools,
strings, containers, NumPy scalars and arrays, plain objects). For every
example the call either works, and a config round-trips where there is one,
or raises `ValueError`/`TypeError` naming a non-default argument in
backticks (`tests.fuzzing.call`). `test_registry_covers_public_api` fails
when a public name has no spec, so nothing new escapes the fuzzing.

Constructors and pure functions run 100 examples each in the default run
and 500 in `.ci/run` (`KERAS_TRAINOPT_FUZZ_EXAMPLES=500`). Functions that train
(or render, or run a search) run fewer, with the model and data fixed to a
tiny valid pair and the step, epoch and trial counts drawn from small
ranges, so that a valid call costs a fraction of a second. Every callback
also runs `fit` for 2 epochs with ~20 fuzzed-but-accepted instances.

Examples are derandomized, so CI sees the same ones on every run.
"""

import importlib
import inspect
import json
import math
import os
import pkgutil
import tempfile
import warnings

import keras
import keras_tuner
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

import keras_trainopt
from keras_trainopt import callbacks
from keras_trainopt import diagnostics
from keras_trainopt import optimizers
from keras_trainopt import reporting
from keras_trainopt import schedules
from keras_trainopt import tuning
from tests import fuzzing
from tests.callbacks.helpers import tiny_data
from tests.fuzzing import ACCEPTED
from tests.fuzzing import INF
from tests.fuzzing import NAN
from tests.fuzzing import REJECTED
from tests.fuzzing import Spec
from tests.fuzzing import bools
from tests.fuzzing import built
from tests.fuzzing import choices
from tests.fuzzing import fresh_dir
from tests.fuzzing import hostile
from tests.fuzzing import ints
from tests.fuzzing import mix
from tests.fuzzing import optional
from tests.fuzzing import paths
from tests.fuzzing import rarely
from tests.fuzzing import reals
from tests.fuzzing import values

# Examples per constructor and pure function: 500 in CI (`.ci/run` sets
# it), 100 in the README's default run, which must stay short.
CONSTRUCTOR_EXAMPLES = int(os.environ.get("KERAS_TRAINOPT_FUZZ_EXAMPLES", "100"))


def fuzz_settings(examples):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: reproducible CI
        database=None,
        # Strategies that build models or folders per draw are slow to
        # generate by design; that is not a problem of the test.
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )


X, Y = tiny_data(32)
X_PROBE = X[:8]


# -- models and data ----------------------------------------------------------


def member(inputs=4, outputs=1):
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(outputs)]
    )


def compiled_model(metrics=("accuracy",)):
    """A tiny compiled regression model; eager where that is faster."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    model.compile(
        keras.optimizers.SGD(0.1),
        loss="mse",
        metrics=list(metrics),
        # TensorFlow and PyTorch: no tracing per fresh model. Not JAX: there
        # a run_eagerly fit of StepDecay(unit="step") fails from its second
        # step (TypeError in Keras' metrics), a bug outside this test.
        run_eagerly=keras.backend.backend() != "jax",
    )
    return model


def check_patched_model(result, kwargs):
    assert result is kwargs["model"]


def batchnorm_model():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
         keras.layers.Dense(1)]
    )


# -- shared strategies --------------------------------------------------------


def learning_rates():
    return reals(-0.1, 1.5, 0.0, 1e-12, 0.1, 3.4e38, 1e39)


def verbose():
    return ints(-1, 2, 0, 1)


def decay_common():
    return dict(
        initial_learning_rate=learning_rates(),
        min_learning_rate=reals(-0.1, 0.2, 0.0, 0.1),
        warmup=ints(-2, 10, 0, 10**6),
        steps_per_epoch=optional(ints(-1, 10, 0, 1, 10**9)),
        gradient_accumulation_steps=optional(ints(-1, 10, 0, 1, 10**9)),
        name=optional(values("schedule", "", "a/b")),
    )


def continuous_shape():
    return dict(
        decay=reals(-0.5, 5.0, 0.0, 1e3),
        staircase=bools(),
        every=ints(-1, 5, 0, 1),
    )


def callback_decay_common():
    return dict(
        initial_learning_rate=optional(learning_rates()),
        unit=choices("epoch", "step"),
        min_learning_rate=reals(-0.1, 0.2, 0.0, 0.1),
        warmup=ints(-2, 4, 0),
        verbose=verbose(),
    )


def average_common():
    return dict(
        validate_with_average=bools(),
        apply_at_end=bools(),
        batchnorm_data=optional(values(X, [X], "x", 5)),
        batchnorm_steps=optional(ints(-1, 3, 0, 1)),
        verbose=verbose(),
        skip_non_finite=bools(),
    )


def float_series(min_size=0, max_size=40):
    return st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32),
        min_size=min_size, max_size=max_size,
    )


def loss_series():
    t = np.arange(60.0)
    return mix(
        st.one_of(
            float_series(),
            st.lists(st.floats(0.0, 10.0), min_size=20, max_size=60),
            st.sampled_from(
                [2.0 * np.exp(-t / 20) + 0.1, 2.0 - 0.004 * t, np.ones(30),
                 np.sin(t) + 1.0, (2.0 * np.exp(-t / 20)).tolist(),
                 np.array([NAN, INF, 1.0] * 10)]
            ),
        )
    )


# -- checks on accepted results -----------------------------------------------

STEPS = np.array([0, 1, 2, 7, 100, 10**6])


def check_schedule(schedule, kwargs, json_round_trip=True):
    rates = np.asarray(ops.convert_to_numpy(schedule(STEPS)), "float64")
    assert rates.shape == STEPS.shape
    assert np.all(np.isfinite(rates)) and np.all(rates >= 0), rates
    top = schedule.initial_learning_rate
    assert np.all(rates <= top * (1 + 1e-6)), (rates, top)
    floor = float(np.float32(getattr(schedule, "min_learning_rate", 0.0)))
    assert np.all(rates >= floor * (1 - 1e-6)), (rates, floor)
    for t in (0, 3, 10**6):
        assert math.isfinite(schedule.value(t))
    if json_round_trip:
        config = json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
        restored = keras.optimizers.schedules.deserialize(config)
        assert fuzzing.same(restored.get_config(), schedule.get_config())


def check_decay_callback(callback, kwargs):
    if callback.initial_learning_rate is not None:
        assert math.isfinite(callback.learning_rate(3))
        steps_per_epoch = 4 if callback.unit == "epoch" else None
        check_schedule(callback.to_schedule(steps_per_epoch), kwargs, False)


def check_running_smooth(running, kwargs):
    # a huge resumed average may smooth to inf (read as divergence), not NaN
    assert not math.isnan(running.update(1.0))
    assert not math.isnan(running.value)


def check_search_space(space, kwargs):
    repr(space)
    assert isinstance(space.is_empty, bool)
    space.hparams_domains()


def check_config_mapping(config, kwargs):
    again = tuning.HyperparameterConfig(config.to_dict())
    assert fuzzing.same(dict(again), dict(config))


def check_suggestion(rate, kwargs):
    assert isinstance(rate, float) and math.isfinite(rate) and rate > 0, rate


def check_verdict(*verdicts):
    def check(diagnosis, kwargs):
        assert isinstance(diagnosis, diagnostics.Diagnosis)
        assert diagnosis.verdict in verdicts, diagnosis
    return check


def check_smooth(result, kwargs):
    assert isinstance(result, np.ndarray) and result.ndim == 1
    assert len(result) == len(kwargs["losses"])


def check_activation_stats(stats, kwargs):
    values = np.asarray(kwargs["values"], "float64")
    if values.size and np.all(np.isfinite(values)):
        assert math.isfinite(stats["mean"]) and math.isfinite(stats["std"])
    counts, edges = stats["histogram"]
    assert np.all(np.isfinite(edges)) and len(edges) == len(counts) + 1


def check_advice(found, kwargs):
    assert found and all(isinstance(a, diagnostics.Advice) for a in found)
    assert all(a.severity in diagnostics.advice.SEVERITIES for a in found)


def check_update_ratio(ratio, kwargs):
    assert isinstance(ratio, float)


def close_writer(writer, kwargs):
    reporting.close_run(writer)


def check_optimizer(optimizer, kwargs):
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov


def check_ensemble(ensemble, kwargs):
    out = ensemble(X_PROBE)  # eager: predict() would trace per ensemble
    assert np.all(np.isfinite(ops.convert_to_numpy(out)))


# -- concrete subclasses of the abstract schedule bases ------------------------


class Halving(schedules.DecaySchedule):
    """A concrete `DecaySchedule`, as users subclass it."""

    def _shape(self, t, xp):
        return xp.power(0.5, xp.minimum(t, 100.0))

    def _shape_config(self):
        return {}


class Linear(schedules.ContinuousDecaySchedule):
    """A concrete `ContinuousDecaySchedule`: a clipped linear fall."""

    curve = staticmethod(
        lambda t, decay, xp: 1.0 - xp.minimum(decay * t, 1.0)
    )


# -- the registry -------------------------------------------------------------


def _schedule_spec(extra, json_round_trip=True, target=None):
    return Spec(
        params=lambda: {**decay_common(), **extra()},
        after=lambda s, kw: check_schedule(s, kw, json_round_trip),
        target=target,
    )


def _ensemble_members():
    a, b = member(), member()
    wide, other = member(outputs=3), member(inputs=5)
    return dict(
        models=values(
            [a, b], (a, b), [a], [], a, [a, "x"], [a, None], [a, wide],
            [a, other], "abc",
        ),
        name=optional(values("ensemble", "", "a/b")),
        trainable=bools(),
    )


def _search_space_knobs():
    def pair(low, high, *edges):
        return st.one_of(
            reals(low, high, *edges),
            st.tuples(st.floats(low, high), st.floats(low, high)),
            values((0.1, 0.5), [1e-3, 1e-1], (1, 2, 3), (0.5,), ("a", "b")),
        )

    return dict(
        epochs=ints(-1, 40, 0, 1),
        learning_rate=optional(pair(-0.1, 2.0, 0.0, 1e-4)),
        schedule=values(
            "step", ("step", "exponential"), ["constant"], [], ("step", "step"),
            "bogus", ["step", 3], ("step", "exponential", "inverse_time",
                                   "constant"),
        ),
        step_factor=optional(pair(-0.1, 1.1, 0.0, 1.0)),
        step_every=optional(
            st.one_of(ints(-1, 20, 0, 1), values((1, 5), (2, 2), (1.5, 3)))
        ),
        exponential_decay=optional(pair(-0.1, 5.0, 0.0)),
        inverse_time_decay=optional(pair(-0.1, 5.0, 0.0)),
        l2=optional(pair(-1e-3, 1e-1, 0.0)),
        dropout=optional(pair(-0.1, 1.1, 0.0, 1.0)),
        momentum=rarely(values(0.9)),  # not a knob: refused
    )


def _record(params):
    return Spec(params=lambda: {name: hostile() for name in params},
                always_accepts=True)


def _loss_findings():
    return optional(values(
        {"diagnosis": "learning_rate_too_high", "reason": "it diverged: x",
         "diverged_at_step": 12, "learning_rate": 0.3},
        {"diagnosis": "learning_rate_too_low", "reason": "slow: x",
         "diverged_at_step": None, "learning_rate": None},
        {"diagnosis": "learning_rate_too_low", "reason": "", "learning_rate": NAN},
        {"diagnosis": "good", "reason": "fine"}, {},
    ))


def _fit_findings():
    return optional(values(
        {"diagnosis": "overfitting", "reason": "gap", "gaps": [0.1, 0.3],
         "best_epoch": 0, "epoch": 2},
        {"diagnosis": "overfitting", "gaps": [NAN]},
        {"diagnosis": "underfitting", "gaps": [0.0]},
        {"diagnosis": "good_fit", "gaps": []}, {},
    ))


def _report_log_dir():
    """A log folder with a few monitors' scalars and a text."""
    path = fresh_dir()
    writer = reporting.open_run(str(path), "monitors")
    writer.scalars("loss_monitor/batch_loss", range(30),
                   [2.0 * 0.9**s for s in range(30)])
    writer.text("doctor/advice", "- **ok**: fine", 0)
    reporting.close_run(writer)
    return path


REGISTRY = {
    # schedules
    "StepDecaySchedule": _schedule_spec(
        lambda: dict(factor=reals(-0.5, 1.5, 0.0, 1.0, 0.5, 1e-9),
                     every=ints(-1, 20, 0, 1, 10**9))
    ),
    "ExponentialDecaySchedule": _schedule_spec(continuous_shape),
    "InverseTimeDecaySchedule": _schedule_spec(continuous_shape),
    "DecaySchedule": _schedule_spec(dict, False, Halving),
    "ContinuousDecaySchedule": _schedule_spec(continuous_shape, False, Linear),
    "CyclicCosineSchedule": Spec(
        params=lambda: dict(
            initial_learning_rate=learning_rates(),
            cycle_steps=ints(-1, 50, 0, 1, 10**12),
            name=optional(values("schedule", "", "a/b")),
        ),
        after=check_schedule,
    ),
    # callbacks
    "StepDecay": Spec(
        params=lambda: dict(
            **callback_decay_common(),
            factor=reals(-0.5, 1.5, 0.0, 1.0, 0.5),
            every=ints(-1, 20, 0, 1),
        ),
        after=check_decay_callback,
    ),
    "ExponentialDecay": Spec(
        params=lambda: {**callback_decay_common(), **continuous_shape()},
        after=check_decay_callback,
    ),
    "InverseTimeDecay": Spec(
        params=lambda: {**callback_decay_common(), **continuous_shape()},
        after=check_decay_callback,
    ),
    "ExponentialMovingAverage": Spec(
        params=lambda: dict(
            decay=reals(-0.1, 1.1, 0.0, 1.0, 0.999),
            warmup=bools(),
            every=ints(-1, 10, 0, 1),
            **average_common(),
        )
    ),
    "StochasticWeightAveraging": Spec(
        params=lambda: dict(
            start_epoch=ints(-1, 3, 0),
            swa_learning_rate=optional(st.one_of(
                learning_rates(),
                values((0.1, 0.01), [0.1, 0.01], (0.01, 0.1), (0.1,),
                       (0.1, -1.0), (0.1, NAN), ("a", "b")),
            )),
            **average_common(),
        )
    ),
    "SnapshotEnsemble": Spec(
        params=lambda: dict(
            cycles=ints(-1, 6, 0, 1),
            initial_learning_rate=optional(learning_rates()),
            directory=paths(),
            verbose=verbose(),
        )
    ),
    "CheckpointEnsemble": Spec(
        params=lambda: dict(
            every=ints(-1, 3, 0, 1),
            keep=ints(-1, 3, 0, 1),
            directory=paths(),
            verbose=verbose(),
        )
    ),
    "LossMonitor": Spec(
        params=lambda: dict(
            log_dir=paths(),
            every=ints(-1, 5, 0, 1),
            divergence_threshold=reals(0.0, 10.0, 1.0, 4.0),
            min_steps=ints(-1, 30, 0, 1),
            stop_on_divergence=bools(),
            restore_weights=bools(),
            oscillation_threshold=reals(-0.5, 2.0, 0.0),
            linearity_threshold=reals(-0.5, 2.0, 0.0),
            chance_loss=values("auto", None, 2.3, 0.0, -1.0, "ln", NAN),
            verbose=verbose(),
        )
    ),
    "OverfittingMonitor": Spec(
        params=lambda: dict(
            metric=values("accuracy", "loss", "mse", "val_loss", "bogus", ""),
            log_dir=paths(),
            mode=choices("auto", "max", "min"),
            overfitting_gap=reals(-0.1, 1.0, 0.0),
            underfitting_gap=reals(-0.1, 1.0, 0.0),
            underfitting_value=st.one_of(st.just("auto"),
                                         optional(reals(-1.0, 2.0, 0.8))),
            patience=ints(-1, 4, 0, 1),
            stop_on_overfitting=bools(),
            restore_best_weights=bools(),
            verbose=verbose(),
        )
    ),
    "ActivationMonitor": Spec(
        params=lambda: dict(
            x=values(X_PROBE, X_PROBE[:1], "abc", 5, None, X_PROBE.tolist()),
            log_dir=paths(),
            every_epochs=ints(-1, 3, 0, 1),
            layers=optional(values(["dense"], [], ("dense",), "dense", [5],
                                   ["nope"])),
            saturation_tolerance=reals(-0.1, 0.6, 0.0, 0.5),
            warn_fraction=reals(-0.1, 1.1, 0.0, 1.0),
            verbose=verbose(),
            model=optional(values(3, "model")),
            max_overhead=optional(reals(-0.1, 1.1, 0.0, 1.0)),
        )
    ),
    "TrainingDoctor": Spec(
        params=lambda: dict(
            log_dir=paths(),
            x_probe=optional(values(X_PROBE, "abc", 5)),
            metric=values("accuracy", "loss", "bogus", ""),
            overfitting_gap=reals(-0.1, 1.0, 0.0),
            every=ints(-1, 5, 0, 1),
            update_ratio_every=ints(-1, 5, 0, 1),
            verbose=verbose(),
            probe_model=optional(values(3, "model")),
            probe_overhead=optional(reals(-0.1, 1.1, 0.0, 1.0)),
        )
    ),
    "UpdateRatioLogger": Spec(
        params=lambda: dict(
            log_dir=paths(),
            every=ints(-1, 5, 0, 1),
            low=reals(-1e-3, 1.0, 0.0, 1e-4),
            high=reals(-1e-3, 1.0, 0.0, 1e-2),
            verbose=verbose(),
        )
    ),
    "BackupAndRestore": Spec(
        params=lambda: dict(
            backup_dir=paths(allow_none=False),
            save_freq=values("epoch", "batch", 10, 0, -3, 2.5, None),
            double_checkpoint=bools(),
            delete_checkpoint=bools(),
            handle_sigterm=bools(),
        )
    ),
    # ensembles and averaging
    "EnsembleModel": Spec(params=_ensemble_members, after=check_ensemble),
    "fit_seed_ensemble": Spec(
        # Each valid call trains one model per seed: few examples.
        examples=30,
        params=lambda: dict(
            build_model=built(
                lambda: compiled_model,
                lambda: member,  # not compiled
                lambda: (lambda: "a model"),
                lambda: "build_model",
            ),
            seeds=values(1, 2, [0, 1], (3,), [0, 0], [], [-1], [1.5], 0, -1),
            epochs=values(1, 0, -1, "x", 1.5),
            batch_size=optional(ints(-1, 40, 0, 16)),
            epochz=rarely(values(1)),  # not an argument of `fit`: refused
        ),
        fixed=lambda: dict(x=X, y=Y, verbose=0),
        always=("seeds",),  # not the default 5 members
    ),
    "recompute_batchnorm_statistics": Spec(
        # Each valid call runs a probe model over the data per BatchNorm.
        examples=60,
        params=lambda: dict(
            data=values(X, [X[:16], X[16:]], (X[:8],), [], np.zeros((0, 4)),
                        "abc", 5, None),
            batch_size=ints(-1, 40, 0, 1),
            steps=optional(ints(-1, 3, 0, 1)),
            skip_frozen=bools(),
        ),
        fixed=lambda: dict(model=batchnorm_model()),
    ),
    # optimizers
    "nesterov_sgd": Spec(
        params=lambda: dict(
            learning_rate=st.one_of(
                learning_rates(),
                built(lambda: schedules.StepDecaySchedule(0.1),
                      lambda: callbacks.StepDecay(0.1)),
            ),
            momentum=reals(-0.1, 1.1, 0.0, 1.0, 0.9),
            # SGD's own arguments go through **kwargs: drawn one time in
            # four each, so that many calls combine a few and still work
            nesterov=rarely(bools()),  # always refused
            weight_decay=rarely(optional(reals(-1.0, 1.0, 0.0))),
            clipnorm=rarely(optional(reals(-1.0, 5.0, 0.0))),
            clipvalue=rarely(optional(reals(-1.0, 5.0, 0.0))),
            global_clipnorm=rarely(optional(reals(-1.0, 5.0, 0.0))),
            use_ema=rarely(bools()),
            ema_momentum=rarely(reals(-0.1, 1.1, 0.0, 1.0)),
            ema_overwrite_frequency=rarely(optional(ints(-1, 10, 0, 1))),
            loss_scale_factor=rarely(optional(reals(-1.0, 10.0, 0.0))),
            gradient_accumulation_steps=rarely(optional(ints(-1, 4, 0, 1, 2))),
            name=rarely(optional(values("sgd", "", "a/b"))),
            bogus=rarely(values(1)),  # not an SGD argument: refused
        ),
        after=check_optimizer,
    ),
    # distribute
    "patch_keras_for_multi_worker": Spec(
        # No strategy here: a model is returned unchanged, anything else
        # is refused. With two valid inputs only, and hypothesis avoiding
        # repeats, few of 500 examples are valid (6): at least one must be.
        min_accepted=0.0,
        params=lambda: dict(model=built(compiled_model, batchnorm_model,
                                        lambda: keras.layers.Dense(1))),
        after=check_patched_model,
    ),
    # diagnostics
    "Advice": _record(("topic", "severity", "message", "finding",
                       "evidence")),
    "Diagnosis": _record(("verdict", "reason")),
    "RunningSmooth": Spec(
        params=lambda: dict(
            beta=reals(-0.5, 1.5, 0.0, 1.0, 0.98),
            average=reals(-10.0, 10.0, 0.0),
            count=ints(-1, 100, 0, 10**30),
        ),
        after=check_running_smooth,
    ),
    "smooth": Spec(
        params=lambda: dict(losses=loss_series(),
                            beta=reals(-0.5, 1.5, 0.0, 1.0, 0.98)),
        after=check_smooth,
    ),
    "diagnose_loss_curve": Spec(
        params=lambda: dict(
            losses=loss_series(),
            min_steps=ints(-1, 40, 0, 1, 2),
            oscillation_threshold=reals(-0.5, 2.0, 0.0),
            linearity_threshold=reals(-0.5, 2.0, 0.0),
            flat_tolerance=reals(-0.5, 1.0, 0.0),
            chance_loss=optional(reals(0.1, 5.0, 0.0, -1.0)),
        ),
        after=check_verdict("insufficient_data", "good",
                            "learning_rate_too_high", "learning_rate_too_low"),
    ),
    "diagnose_fit": Spec(
        params=lambda: dict(
            train=reals(-1.0, 2.0, 0.0, 1.0, NAN, INF),
            validation=reals(-1.0, 2.0, 0.0, 1.0, NAN),
            lower_better=bools(),
            overfitting_gap=reals(-0.1, 1.0, 0.0),
            underfitting_gap=reals(-0.1, 1.0, 0.0),
            underfitting_value=optional(reals(-1.0, 2.0, 0.8)),
        ),
        after=check_verdict("good_fit", "overfitting", "underfitting"),
    ),
    "update_ratio": Spec(
        params=lambda: dict(
            before=values([3.0, 4.0], np.ones((2, 3)), np.zeros(3), [1.0],
                          np.array([NAN]), 2.0, [[1.0, 2.0]]),
            after=values([3.003, 4.004], np.ones((2, 3)), np.ones(3), [1.5],
                         2.0, [1.0, 2.0, 3.0]),
        ),
        after=check_update_ratio,
    ),
    "activation_stats": Spec(
        params=lambda: dict(
            values=values(np.tanh(np.linspace(-5, 5, 40)).reshape(8, 5),
                          np.maximum(np.linspace(-1, 1, 24), 0).reshape(2, 3, 4),
                          np.array([[NAN, 1.0], [0.5, INF]]), np.zeros(0),
                          [0.1, 0.9], 0.5, "abc"),
            kind=choices("tanh", "sigmoid", "relu", "linear"),
            tolerance=reals(-0.1, 0.6, 0.0, 0.5),
            bins=ints(-1, 50, 0, 1),
            histogram_sample=ints(-1, 100, 0, 1, 65536),
        ),
        after=check_activation_stats,
    ),
    "advise": Spec(
        params=lambda: dict(
            loss=_loss_findings(),
            fit=_fit_findings(),
            update_ratios=optional(values({"dense": 1e-3}, {"dense": 0.5},
                                          {"dense": NAN, "d2": None}, {})),
            activations=optional(values(
                {"dense": {"saturated_fraction": 0.9, "dead_fraction": None}},
                {"relu": {"saturated_fraction": None, "dead_fraction": 0.8}},
                {"x": {}},
            )),
            ratio_band=values((1e-4, 1e-2), [1e-3, 1e-1], (1e-2, 1e-4),
                              (1e-4,), (NAN, 1.0)),
            saturation_threshold=reals(-0.1, 1.1, 0.0, 1.0),
            dead_threshold=reals(-0.1, 1.1, 0.0, 1.0),
            strong_gap=reals(-0.1, 1.0, 0.0),
            initial_activations=optional(values(
                {"relu": {"saturated_fraction": None, "dead_fraction": 0.1}},
                {"x": {}}, {"x": 5})),
            inputs=optional(values({"rms": 1.0}, {"rms": 300.0},
                                   {"rms": NAN, "non_finite": 3}, {})),
            model=optional(values(
                {"output_activation": "softmax", "from_logits": True,
                 "loss": "sparse_categorical_crossentropy"},
                {"output_activation": "linear", "from_logits": False,
                 "loss": None}, {})),
            input_scale=reals(0.1, 100.0, 0.0, -1.0),
            vanishing_factor=reals(1e-4, 1.0, 0.0, 1.5),
        ),
        after=check_advice,
    ),
    # reporting
    "open_run": Spec(
        params=lambda: dict(
            log_dir=paths(),
            run=values("monitors", "results", "", "a/b", "."),
        ),
        after=close_writer,
    ),
    "close_run": Spec(
        params=lambda: dict(
            writer=optional(built(
                lambda: reporting.open_run(str(fresh_dir()), "monitors"),
                lambda: "writer",
            )),
        ),
        min_accepted=0.01,  # two valid values (None and a writer) in all
    ),
    "custom_scalars_layout": Spec(
        # Three valid inputs only: with hypothesis avoiding repeats, few of
        # 500 examples are valid (13): at least one must be.
        min_accepted=0.0,
        params=lambda: dict(
            omit=values((), ["saturated fraction"], {"dead ReLU fraction"}, 5,
                        "saturated fraction", [1]))),
    "log_results": Spec(
        params=lambda: dict(
            log_dir=paths(allow_none=False),
            results=values(
                {"test_accuracy/final": 0.9}, {"acc": np.float32(0.5)},
                {"a": 1, "b/c": -2.5}, {}, {"": 1.0}, {"/": 1.0}, {"a": NAN},
                {"a": True}, {5: 1.0}, {"a": "x"}, [("a", 1.0)],
            ),
            step=ints(-1, 10, 0),
        ),
    ),
    "write_report": Spec(
        # Each valid call renders matplotlib charts: few examples.
        examples=30,
        params=lambda: dict(
            log_dir=built(
                _report_log_dir,
                lambda: str(_report_log_dir()),
                lambda: str(fresh_dir()),  # no event files
                lambda: str(fresh_dir() / "missing"),
                lambda: str(fuzzing.existing_file()),
                lambda: "",
            ),
            output=optional(built(
                lambda: str(fresh_dir() / "report.html"),
                lambda: fresh_dir() / "sub" / "report.html",
                lambda: str(fresh_dir()),  # an existing folder
                lambda: str(fuzzing.existing_file()),  # overwritten
                lambda: "",
            )),
        ),
    ),
    # tuning
    "HyperparameterConfig": Spec(
        params=lambda: dict(
            values=mix(st.one_of(
                st.dictionaries(
                    st.sampled_from(["learning_rate", "schedule", "step_factor",
                                     "step_every", "l2", "dropout", "stage"]),
                    st.one_of(st.none(), st.floats(0.0, 1.0),
                              st.integers(1, 10),
                              st.sampled_from(["step", "constant"])),
                ),
                values([("learning_rate", 0.1)], "ab"),
            ))
        ),
        after=check_config_mapping,
    ),
    "LearningRateFinderResult": _record((
        "learning_rates", "losses", "smoothed_losses", "suggestion",
        "suggestions", "rule", "stopped_early", "warnings",
    )),
    "LearningRateComparison": _record((
        "learning_rates", "epoch_losses", "val_losses", "steps",
        "step_losses", "diagnoses", "reasons", "recommended",
    )),
    "compare_learning_rates": Spec(
        # Each valid call trains one tiny model per rate: few examples.
        examples=30,
        params=lambda: dict(
            learning_rates=values((0.01, 0.1), [0.05], (), [0.1, -1.0],
                                  "0.1", [0.1, 0.1], (NAN,), 0.1),
            epochs=ints(1, 2, 0, -1),
            validation_data=optional(values((X[:8], Y[:8]))),
            batch_size=optional(ints(4, 32, 0, -1)),
            steps_per_epoch=optional(ints(1, 2, 0, -1)),
            seed=ints(0, 10, -1),
            log_dir=optional(paths()),
            verbose=ints(0, 0, -1),
        ),
        fixed=lambda: dict(build_model=compiled_model, x=X, y=Y),
        always=("learning_rates", "epochs"),
    ),
    "SearchResult": _record((
        "best", "best_score", "objective", "direction", "trials", "warnings",
        "space", "fine_space", "directory", "tuners", "log_dir", "role",
        "best_trial",
    )),
    "SearchSpace": Spec(
        # Every knob may be hostile, so few calls have all of them valid
        # (4 of the default run's 100 examples).
        params=_search_space_knobs, after=check_search_space,
        min_accepted=0.03,
    ),
    "steepest": Spec(params=lambda: _suggestion_params(), after=check_suggestion),
    "minimum": Spec(params=lambda: _suggestion_params(), after=check_suggestion),
    "valley": Spec(params=lambda: _suggestion_params(), after=check_suggestion),
    "find_learning_rate": Spec(
        # Each valid call trains up to 6 steps (the shared model is put
        # back afterwards by find_learning_rate itself): few examples.
        examples=60,
        params=lambda: dict(
            # ranges of valid values, the invalid ones among the edges
            batch_size=optional(ints(1, 32, 0, 33)),
            lr_min=reals(1e-7, 1e-2, 0.0, -1e-3, 1.0, 1e-300),
            lr_max=reals(0.1, 20.0, 0.0, -1.0, 1e-8, 1e300),
            steps=ints(2, 6, -1, 0, 1),
            rule=choices("steepest", "minimum", "valley"),
            smoothing=reals(0.0, 0.99, 1.0, -0.1),
            divergence_threshold=reals(1.5, 10.0, 1.0, 0.0),
            seed=optional(ints(0, 10, -1, 2**40)),
            verbose=ints(0, 1, -1),
        ),
        fixed=lambda: dict(model=_shared_model(), x=X, y=Y),
        after=lambda result, kw: check_suggestion(result.suggestion, kw),
        always=("steps",),  # not the default 100 steps
    ),
    "search_hyperparameters": Spec(
        # Each valid call runs keras-tuner trials (1-2 of 1 epoch each,
        # about 2 s): the fewest examples of all, and a hostile value one
        # draw in ten per argument, so that a few calls do run.
        examples=20,
        params=lambda: dict(
            max_trials=ints(1, 2, 0, share=10),
            epochs=ints(1, 1, 0, share=10),
            batch_size=optional(ints(8, 32, 0, share=10)),
            steps_per_epoch=optional(ints(1, 2, 0, share=10)),
            validation_steps=optional(ints(1, 1, 0, share=10)),
            search_space=optional(values(
                {"learning_rate": (1e-3, 1e-1)}, {"dropout": None},
                {"bogus": 1}, {"learning_rate": 0.1, "schedule": "step",
                               "step_factor": 0.5, "step_every": 1},
                share=10,
            )),
            objective=values("val_loss", "val_accuracy", "loss", "val_bogus",
                             keras_tuner.Objective("val_loss", "min"),
                             share=10),
            coarse_fraction=reals(0.1, 1.0, 0.0, share=10),
            coarse_epochs=optional(ints(1, 1, 0, share=10)),
            zoom=reals(0.1, 1.0, 0.0, share=10),
            edge_fraction=reals(0.05, 0.5, 0.0, 0.6, share=10),
            callbacks=optional(values([], [keras.callbacks.TerminateOnNaN()],
                                      "x", 5, [5], share=10)),
            log_dir=paths(share=10),
            directory=optional(built(lambda: str(fresh_dir()),
                                     lambda: fresh_dir() / "search",
                                     share=10)),
            overwrite=bools(share=10),
            seed=optional(ints(0, 100, -1, share=10)),
            verbose=ints(0, 1, -1, share=10),
        ),
        fixed=lambda: dict(build_model=_search_model, x=X, y=Y,
                           validation_data=(X[:8], Y[:8])),
        always=("max_trials", "epochs"),  # not the default 20 x 10 epochs
    ),
}


def _suggestion_params():
    rates = np.logspace(-4, 0, 21)
    falling = 1 / (1 + np.exp(4 * (np.log10(rates) + 2)))
    return dict(
        learning_rates=values(rates, rates.tolist(), rates[:3], [1e-3, 1e-2],
                              -rates, np.zeros(21), rates[::-1], [1e-3], "abc"),
        losses=values(falling, falling.tolist(), np.full(21, NAN),
                      np.append(falling[:-1], INF), [2.0, 1.0], [1.0], "abc"),
    )


_SHARED = {}


def _shared_model():
    """One compiled model for all `find_learning_rate` examples of a test."""
    return _SHARED.setdefault("model", compiled_model())


def _search_model(config):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, kernel_regularizer=config.regularizer()),
        keras.layers.Dropout(config.dropout),
        keras.layers.Dense(1),
    ])
    model.compile(config.optimizer(), loss="mse", metrics=["accuracy"],
                  run_eagerly=keras.backend.backend() != "jax")
    return model


CALLBACKS = sorted(name for name in callbacks.__all__)


# -- coverage of the public API ----------------------------------------------


def public_objects():
    """`{name: object}` over the `__all__` of the package and subpackages;
    a module listed there contributes its public functions."""
    modules = [keras_trainopt] + [
        importlib.import_module(f"keras_trainopt.{info.name}")
        for info in pkgutil.iter_modules(keras_trainopt.__path__)
        if info.ispkg and not info.name.startswith("_")
    ]
    found = {}
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            members = (
                {k: v for k, v in vars(obj).items()
                 if not k.startswith("_") and callable(v)
                 and getattr(v, "__module__", None) == obj.__name__}
                if inspect.ismodule(obj) else {name: obj}
            )
            for key, value in members.items():
                assert found.setdefault(key, value) is value, (
                    f"two public objects are called {key}"
                )
    return found


def test_registry_covers_public_api():
    public = public_objects()
    missing = sorted(set(public) - set(REGISTRY))
    stale = sorted(set(REGISTRY) - set(public))
    assert not missing, f"public names with no fuzz spec in REGISTRY: {missing}"
    assert not stale, f"REGISTRY names that are not public: {stale}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_spec_covers_every_parameter(name):
    spec = REGISTRY[name]
    target = spec.target or public_objects()[name]
    named = fuzzing.signature_parameters(target)
    covered = set(spec.params()) | set(spec.fixed())
    missing = sorted(set(named) - covered)
    assert not missing, f"{name}: parameters with no strategy: {missing}"
    extra = sorted(covered - set(named))
    assert not extra or fuzzing.accepts_var_keyword(target), (
        f"{name}: strategies for unknown parameters {extra}"
    )


# -- the fuzz tests -----------------------------------------------------------


def run_spec(name):
    spec = REGISTRY[name]
    public = public_objects()[name]
    target = spec.target or public
    fixed = spec.fixed()
    tally = fuzzing.Tally()

    @fuzz_settings(spec.examples or CONSTRUCTOR_EXAMPLES)
    @given(kwargs=fuzzing.calls(target, spec.params(), fixed, spec.always))
    def run(kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome, result = fuzzing.call(target, kwargs, fixed)
            if outcome == ACCEPTED:
                if spec.round_trip and hasattr(result, "get_config"):
                    fuzzing.check_config_round_trip(result)
                if spec.after is not None:
                    spec.after(result, kwargs)
        tally(outcome)

    with fuzzing.in_fresh_cwd():  # relative paths drawn land in a temp folder
        run()
    total = sum(tally.counts.values())
    tally.check(
        min_accepted=max(1, int(total * spec.min_accepted)),
        min_rejected=0 if spec.always_accepts else max(1, total // 20),
    )


FUNCTIONS_THAT_TRAIN = {name for name, spec in REGISTRY.items()
                        if spec.examples is not None}


@pytest.mark.parametrize("name", sorted(set(REGISTRY) - FUNCTIONS_THAT_TRAIN))
def test_constructor_or_function_contract(name):
    run_spec(name)


@pytest.mark.slow  # trains models: `.ci/run` runs these
@pytest.mark.parametrize("name", sorted(FUNCTIONS_THAT_TRAIN))
def test_training_function_contract(name, monkeypatch):
    # search_hyperparameters' default folder is a new temporary one: under
    # the fuzz root, so that it is removed with it
    monkeypatch.setattr(tempfile, "tempdir", str(fuzzing.tmp_root()))
    try:
        run_spec(name)
    finally:
        _SHARED.clear()


# -- callbacks in fit -----------------------------------------------------------


class FirstStep(keras.callbacks.Callback):
    """Notes whether a training step has completed."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


# Arguments a callback can only check once it sees the epoch logs, named in
# the error (`metric='bogus'`) but raised at the end of the first epoch.
# TODO(issue 7): OverfittingMonitor could check `metric` against the
# compiled metrics in on_train_begin; remove the entry when it does.
LATE_CHECKS = {"OverfittingMonitor": ("metric",), "TrainingDoctor": ("metric",)}

# What each callback's fit needs beyond 2 epochs of 2 steps: validation
# data where it is read (it doubles the cost of a fit, so only there), and
# for SnapshotEnsemble more steps than its default 5 cycles.
FIT_OPTIONS = {
    "ExponentialMovingAverage": dict(validation_data=(X[:8], Y[:8])),
    "OverfittingMonitor": dict(validation_data=(X[:8], Y[:8])),
    "SnapshotEnsemble": dict(batch_size=8),
    "StochasticWeightAveraging": dict(validation_data=(X[:8], Y[:8])),
    "TrainingDoctor": dict(validation_data=(X[:8], Y[:8])),
}

# A probe batch of the wrong shape passes the constructor (the model is not
# known yet) and fails at the first probe, after an epoch: in fit, probes
# are drawn from right and type-wrong values only.
# TODO(issue 7): check the probe against the model in on_train_begin.
PROBES = st.sampled_from([X_PROBE, X_PROBE[:1], "abc", 5, None, [[1.0]]])
FIT_PARAMS = {
    "ActivationMonitor": dict(x=PROBES),
    "TrainingDoctor": dict(x_probe=PROBES),
}


@pytest.mark.slow  # trains models: `.ci/run` runs these
@pytest.mark.parametrize("name", CALLBACKS)
def test_callback_in_fit(name):
    """Accepted callbacks run `fit` for 2 epochs; the only errors are
    ValueError/TypeError naming an argument, raised before the first step
    (the fit may make a valid argument wrong: `cycles` > the steps)."""
    spec = REGISTRY[name]
    cls = getattr(callbacks, name)
    arguments = list(fuzzing.signature_parameters(cls))
    tally = fuzzing.Tally()

    # Rejected constructions are the constructor test's business: here
    # they are filtered out, so that every example trains (hence the
    # suppressed filter health check).
    params = {**spec.params(), **FIT_PARAMS.get(name, {})}

    @settings(fuzz_settings(20), suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(kwargs=fuzzing.calls(cls, params))
    def run(kwargs):
        outcome, callback = fuzzing.call(cls, kwargs)
        assume(outcome == ACCEPTED)
        model = compiled_model()
        first = FirstStep()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X, Y, epochs=2, verbose=0, callbacks=[callback, first],
                          **{"batch_size": 16, **FIT_OPTIONS.get(name, {})})
        except (TypeError, ValueError) as error:
            message = str(error)
            late = [arg for arg in LATE_CHECKS.get(name, ())
                    if f"{arg}=" in message]
            if first.steps and late:
                tally("rejected late")
                return
            assert not first.steps, (
                f"{name} raised after {first.steps} steps: {error!r}\n"
                f"kwargs: {kwargs!r}"
            )
            assert fuzzing.names_in(message, arguments), (
                f"{type(error).__name__} names no argument of {name}: "
                f"{message!r}\nkwargs: {kwargs!r}"
            )
            tally(REJECTED)
            return
        tally(ACCEPTED)

    with fuzzing.in_fresh_cwd():
        run()
    assert tally.counts[ACCEPTED] >= 5, tally.counts


@pytest.mark.slow  # trains models: `.ci/run` runs these
def test_accepted_optimizer_trains():
    """What nesterov_sgd accepts also works in the train step: Keras' SGD
    checks few of its arguments (`clipnorm="x"` fails only there)."""
    spec = REGISTRY["nesterov_sgd"]
    sgd = optimizers.nesterov_sgd
    tally = fuzzing.Tally()

    @settings(fuzz_settings(20), suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(kwargs=fuzzing.calls(sgd, spec.params()))
    def run(kwargs):
        outcome, optimizer = fuzzing.call(sgd, kwargs)
        assume(outcome == ACCEPTED)
        model = member()
        model.compile(optimizer, loss="mse",
                      run_eagerly=keras.backend.backend() != "jax")
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
        tally(ACCEPTED)

    run()
    assert tally.counts[ACCEPTED] >= 10, tally.counts
