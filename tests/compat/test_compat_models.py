"""Compatibility matrix, axis 1: model kinds x callbacks (NumPy inputs).

Each model kind of issue 19 is trained with the combined set (the doctor +
EMA + SWA + decay + BackupAndRestore) and with each callback alone where
the callback depends on what the model is (its layers, its loss tracker,
its optimizers, its train step, its dtype). The test ids read as the
matrix: `test_alone[multi_io-ActivationMonitor]`. The callbacks that do not
depend on the model kind are run alone on every input kind in
test_compat_inputs.py (the functional model with NumPy arrays among them).

A cell passes when the callback's result equals its reference
(tests/compat/references.py), or when the fit is refused before the first
update with an error naming the cause and the way out. Cells that fail on
main because of a bug listed in issue 19 are strict xfails naming the item.
"""

import keras
import pytest

from tests.compat import models
from tests.compat import references as ref

BACKEND = keras.backend.backend()

# the callbacks each model kind interacts with (run alone)
ALONE = {
    "sequential": ["ActivationMonitor", "TrainingDoctor"],
    "subclassed": ["ActivationMonitor", "UpdateRatioLogger", "TrainingDoctor",
                   "BackupAndRestore", "ExponentialMovingAverage"],
    "subclassed_unbuilt": ["UpdateRatioLogger", "ExponentialMovingAverage",
                           "StochasticWeightAveraging", "ExponentialDecay"],
    "multi_io": ["ActivationMonitor", "LossMonitor", "OverfittingMonitor",
                 "SnapshotEnsemble", "UpdateRatioLogger", "BackupAndRestore",
                 "TrainingDoctor"],
    "custom_train_step": ["ExponentialDecay", "LossMonitor", "UpdateRatioLogger",
                          "ExponentialMovingAverage", "StochasticWeightAveraging",
                          "TrainingDoctor"],
    "two_optimizers": ["StepDecay", "ExponentialDecay", "UpdateRatioLogger",
                       "ExponentialMovingAverage", "StochasticWeightAveraging",
                       "LossMonitor"],
    "mixed_precision": ["ExponentialDecay", "ExponentialMovingAverage",
                        "StochasticWeightAveraging", "UpdateRatioLogger",
                        "LossMonitor", "ActivationMonitor"],
}
COMBINED = ["sequential", "functional", "subclassed", "subclassed_unbuilt",
            "multi_io",
            "custom_train_step", "two_optimizers", "mixed_precision"]

# cells refused at train begin, by design: (error, what the message names)
# two optimizers applied by the model's own train_step: what the message
# names (the callback, the optimizers it does not see, the way out)
OWN_STEP = r"(?s){}.*train_step` of its own.*\(body_optimizer, head_optimizer\).*{}"
REFUSED = {
    ("subclassed", "ActivationMonitor"): (ValueError, "keras.Input"),
    ("subclassed", "TrainingDoctor"): (ValueError, "keras.Input"),
    ("two_optimizers", "UpdateRatioLogger"): (
        ValueError, OWN_STEP.format("UpdateRatioLogger", "applies one optimizer")),
    ("two_optimizers", "ExponentialMovingAverage"): (
        ValueError, OWN_STEP.format("ExponentialMovingAverage", "use_ema=True")),
    ("two_optimizers", "LossMonitor"): (
        ValueError, OWN_STEP.format("LossMonitor", "TensorBoard\\(log_dir, "
                                    "update_freq=10\\)")),
}
# the combined set refused as a whole: its doctor runs LossMonitor and
# UpdateRatioLogger, whichever starts first refuses
REFUSED_COMBINED = {
    "two_optimizers": (ValueError, OWN_STEP.format(
        "(LossMonitor|UpdateRatioLogger)", "TrainingDoctor")),
}

XFAIL = {}


# what a refusal of an unbuilt model must say: the cause and the way out
NOT_BUILT = r"(?i)not (yet )?built.*(build\(|call)"


def _skip_reason(model):
    if model == "two_optimizers" and BACKEND != "tensorflow":
        return ("the two-optimizer train_step is written for TensorFlow; "
                "Keras' JAX trainer carries one optimizer's state")
    if model in ("custom_train_step", "two_optimizers") and BACKEND not in (
        "tensorflow", "jax"
    ):
        return "the custom train_step is written for TensorFlow and JAX"
    return None


# the cells of `test_alone` in the default test run: every model kind once
# (each callback alone on every input kind is in test_compat_inputs.py);
# `.ci/run` runs the rest (`slow`)
FAST = {
    ("sequential", "ActivationMonitor"),
    ("subclassed", "TrainingDoctor"),
    ("subclassed_unbuilt", "ExponentialMovingAverage"),
    ("multi_io", "LossMonitor"),
    ("custom_train_step", "ExponentialMovingAverage"),
    ("two_optimizers", "UpdateRatioLogger"),
    ("mixed_precision", "ExponentialDecay"),
}


def _params(pairs, fast=None):
    out = []
    for model, callback in pairs:
        marks = []
        if fast is not None and (model, callback) not in fast:
            marks.append(pytest.mark.slow)
        reason = _skip_reason(model)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        elif (model, callback) in XFAIL:
            marks.append(pytest.mark.xfail(
                strict=True, reason=XFAIL[(model, callback)]))
        out.append(pytest.param(model, callback, marks=marks, id=f"{model}-{callback}"))
    return out


@pytest.mark.parametrize(
    "model, callback",
    _params([(m, c) for m, cs in ALONE.items() for c in cs], FAST),
)
def test_alone(model, callback, tmp_path):
    factory = models.FACTORIES[model]
    if (model, callback) in REFUSED:
        error, match = REFUSED[(model, callback)]
        case = factory()
        ref.expect_refusal(case, [ref.make(callback, case, tmp_path)], error,
                           match, validation=True)
        return
    if model == "subclassed_unbuilt":
        ref.works_or_refused(lambda: ref.run_alone(callback, factory, tmp_path),
                             ValueError, NOT_BUILT)
        return
    ref.run_alone(callback, factory, tmp_path)


@pytest.mark.slow  # every callback in one fit, per model kind: 3-10 s a cell
@pytest.mark.parametrize(
    "model, callback", _params([(m, "combined") for m in COMBINED])
)
def test_combined(model, callback, tmp_path):
    # a subclassed model has no layer outputs to probe: the doctor without x_probe
    def run():
        ref.run_combined(models.FACTORIES[model], tmp_path,
                         x_probe=not model.startswith("subclassed"))

    if model in REFUSED_COMBINED:
        error, match = REFUSED_COMBINED[model]
        case = models.FACTORIES[model]()
        ref.expect_refusal(case, ref.combined_set(case, tmp_path), error,
                           match, validation=True)
    elif model == "subclassed_unbuilt":
        ref.works_or_refused(run, ValueError, NOT_BUILT)
    else:
        run()
