"""What every cell of the matrix checks, against references outside our code.

A cell trains a `Case` (tests/compat/models.py) with one callback (or the
combined set) and a `Recorder` placed after it, then checks the callback's
result against a reference computed here: closed-form learning rates in
plain Python, averages and norms in NumPy over the weights the recorder saw,
Keras' own History and per-batch logs, and Keras sub-models. A cell that
cannot work must fail before the first update with an error that names the
cause (`expect_refusal`).
"""

import contextlib
import math
import signal
import warnings

import keras
import numpy as np

from keras_trainopt import ActivationMonitor
from keras_trainopt import BackupAndRestore
from keras_trainopt import CheckpointEnsemble
from keras_trainopt import ExponentialDecay
from keras_trainopt import ExponentialMovingAverage
from keras_trainopt import InverseTimeDecay
from keras_trainopt import LossMonitor
from keras_trainopt import OverfittingMonitor
from keras_trainopt import SnapshotEnsemble
from keras_trainopt import StepDecay
from keras_trainopt import StochasticWeightAveraging
from keras_trainopt import TrainingDoctor
from keras_trainopt import UpdateRatioLogger
from tests.callbacks.helpers import Interrupt
from tests.callbacks.helpers import weights_of
from tests.compat.models import STEPS_PER_EPOCH

EPOCHS = 2
STEPS = EPOCHS * STEPS_PER_EPOCH

# every public callback (keras_trainopt.__all__)
CALLBACKS = (
    "StepDecay",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LossMonitor",
    "OverfittingMonitor",
    "UpdateRatioLogger",
    "ActivationMonitor",
    "ExponentialMovingAverage",
    "StochasticWeightAveraging",
    "SnapshotEnsemble",
    "CheckpointEnsemble",
    "BackupAndRestore",
    "TrainingDoctor",
)


def inner(optimizer):
    """The optimizer that owns the rate and the step count."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer


def _float(value):
    return float(keras.ops.convert_to_numpy(value))


class Recorder(keras.callbacks.Callback):
    """Records what the references need, after the callback under test.

    - `trajectory[k]`: `model.weights` (NumPy) after the k-th batch, and
      `trajectory[0]` at train begin; `iterations[k]`: each optimizer's
      `iterations` then;
    - `batch_rates[k]`: each optimizer's rate after the k-th batch;
    - `epoch_rates[e]`: each optimizer's rate at epoch e's first batch;
    - `epoch_ends[e]`: the weights at epoch e's end;
    - `running_loss[k]`: Keras' per-batch log of the loss (the running mean
      over the epoch), `batch_in_epoch[k]` the batch index.
    """

    def __init__(self, optimizers):
        super().__init__()
        self.optimizers = [inner(o) for o in optimizers]
        self.trajectory = []
        self.iterations = []
        self.batch_rates = []
        self.epoch_rates = []
        self.epoch_ends = []
        self.running_loss = []
        self.batch_in_epoch = []
        self._first_batch = False

    def _counts(self):
        return [int(keras.ops.convert_to_numpy(o.iterations)) for o in self.optimizers]

    def _rates(self):
        return [_float(o.learning_rate) for o in self.optimizers]

    def on_train_begin(self, logs=None):
        self.trajectory.append(weights_of(self.model))
        self.iterations.append(self._counts())

    def on_epoch_begin(self, epoch, logs=None):
        self._first_batch = True

    def on_train_batch_begin(self, batch, logs=None):
        if self._first_batch:
            self.epoch_rates.append(self._rates())
            self._first_batch = False

    def on_train_batch_end(self, batch, logs=None):
        self.trajectory.append(weights_of(self.model))
        self.iterations.append(self._counts())
        self.batch_rates.append(self._rates())
        self.running_loss.append(float(logs["loss"]))
        self.batch_in_epoch.append(batch)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(weights_of(self.model))

    # -- derived ---------------------------------------------------------

    def step_losses(self):
        """The loss of each batch, from Keras' running means."""
        losses = []
        for k, (mean, batch) in enumerate(zip(self.running_loss, self.batch_in_epoch,
                                              strict=True)):
            if batch == 0:
                losses.append(mean)
            else:
                previous = self.running_loss[k - 1]
                losses.append((batch + 1) * mean - batch * previous)
        return losses

    def weights_at(self, step, optimizer=0):
        """The weights after `step` applied updates of an optimizer."""
        for weights, counts in zip(self.trajectory, self.iterations, strict=True):
            if counts[optimizer] == step:
                return weights
        raise AssertionError(f"no recorded weights after step {step}")


def trainable_mask(model):
    ids = {id(v) for v in model.trainable_variables}
    return [id(v) in ids for v in model.weights]


def weight_key(variable):
    parts = variable.path.split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else parts[0]


def assert_weights_close(actual, expected, mask=None, rtol=1e-5, atol=1e-6):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if mask is None or mask[i]:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol,
                                       err_msg=f"weight {i}")


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_array_equal(a, e, err_msg=f"weight {i}")


@contextlib.contextmanager
def time_limit(seconds):
    """Raises TimeoutError in the main thread after `seconds` (a hang)."""

    def handler(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def numpy_inputs(case):
    return {"x": case.x, "y": case.y, "batch_size": 16, "shuffle": False}


def fit(case, callbacks, inputs=None, epochs=EPOCHS, validation=False, **kwargs):
    """Trains `case` with `callbacks` on `inputs(case)` (fit's data keyword
    arguments; NumPy arrays by default); returns (history, warnings)."""
    fit_kwargs = dict((inputs or numpy_inputs)(case))
    if validation:
        fit_kwargs["validation_data"] = case.validation_data
    fit_kwargs.update(kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = case.model.fit(
            epochs=epochs, callbacks=callbacks, verbose=0, **fit_kwargs
        )
    return history, caught


def expect_refusal(case, callbacks, error, match, inputs=None, **kwargs):
    """The fit fails before the first update with `error` matching `match`."""
    before = weights_of(case.model)
    counts = [int(keras.ops.convert_to_numpy(inner(o).iterations))
              for o in case.optimizers]
    with pytest_raises(error, match):
        fit(case, callbacks, inputs, **kwargs)
    after = [int(keras.ops.convert_to_numpy(inner(o).iterations))
             for o in case.optimizers]
    assert after == counts, "the refused fit ran updates"
    assert_weights_equal(weights_of(case.model), before)


def works_or_refused(run, error, match):
    """`run()` passes its checks, or fails with `error` whose message
    matches `match` (names the cause and the way out). `run` builds its own
    case, so unlike `expect_refusal` this does not check that no update ran."""
    try:
        run()
    except error as e:
        import re

        assert re.search(match, str(e)), f"the refusal names no way out: {e}"


def pytest_raises(error, match):
    import pytest

    return pytest.raises(error, match=match)


def warned_about(caught, *words):
    """Whether a warning names all of `words` (case-insensitive)."""
    for w in caught:
        text = str(w.message).lower()
        if all(word.lower() in text for word in words):
            return True
    return False


# -- references per callback -------------------------------------------------


def check_epoch_decay(case, rec, formula, caught):
    """Each optimizer the step uses has `formula(lr0, epoch)` at each epoch;
    with several optimizers, a warning at train begin is accepted instead."""
    if len(case.optimizers) > 1 and warned_about(caught, "optimizer"):
        return
    lr0 = case.initial_rates
    assert len(rec.epoch_rates) == EPOCHS
    for epoch, rates in enumerate(rec.epoch_rates):
        for i, rate in enumerate(rates):
            assert math.isclose(rate, formula(lr0[i], epoch), rel_tol=1e-6), (
                f"optimizer {i}, epoch {epoch}: {rate} != {formula(lr0[i], epoch)}"
            )


def check_step_decay(case, rec, formula, caught):
    """After each update, each optimizer holds `formula(lr0, iterations)`:
    the rate of its next update."""
    if len(case.optimizers) > 1 and warned_about(caught, "optimizer"):
        return
    lr0 = case.initial_rates
    for rates, counts in zip(rec.batch_rates, rec.iterations[1:], strict=True):
        for i, (rate, step) in enumerate(zip(rates, counts, strict=True)):
            assert math.isclose(rate, formula(lr0[i], step), rel_tol=1e-5), (
                f"optimizer {i} after step {step}: {rate} != {formula(lr0[i], step)}"
            )


def numpy_ema(rec, mask, decay, optimizer=0):
    """EMA over the weights after each applied update, from train begin."""
    ema = [w.astype("float64") for w in rec.trajectory[0]]
    last = rec.iterations[0][optimizer]
    for weights, counts in zip(rec.trajectory[1:], rec.iterations[1:], strict=True):
        if counts[optimizer] == last:
            continue  # a skipped (loss-scaled) step: no update
        last = counts[optimizer]
        ema = [decay * e + (1 - decay) * w for e, w in zip(ema, weights, strict=True)]
    return [e if m else None for e, m in zip(ema, mask, strict=True)]


def check_ema(case, ema, rec, caught, decay=0.9):
    if len(case.optimizers) > 1 and warned_about(caught, "optimizer"):
        return
    mask = trainable_mask(case.model)
    assert ema.num_averaged == rec.iterations[-1][0] - rec.iterations[0][0] > 0
    reference = numpy_ema(rec, mask, decay)
    assert_weights_close(ema.averaged_weights(), reference, mask)
    # the model holds the average; raw_weights() the trained weights
    assert_weights_close(weights_of(case.model), reference, mask)
    assert_weights_equal(ema.raw_weights(), rec.trajectory[-1])


def check_swa(case, swa, rec, caught, start_epoch=0):
    if len(case.optimizers) > 1 and warned_about(caught, "optimizer"):
        return
    mask = trainable_mask(case.model)
    ends = rec.epoch_ends[start_epoch:]
    assert swa.num_averaged == len(ends)
    reference = [
        np.mean([e[i].astype("float64") for e in ends], axis=0) if m else None
        for i, m in enumerate(mask)
    ]
    assert_weights_close(swa.averaged_weights(), reference, mask)
    assert_weights_close(weights_of(case.model), reference, mask)
    assert_weights_equal(swa.raw_weights(), rec.trajectory[-1])


def check_snapshots(case, snapshots, rec, expected_steps):
    assert snapshots.snapshot_steps == expected_steps
    for step, weights in zip(snapshots.snapshot_steps, snapshots.snapshots,
                             strict=True):
        assert_weights_equal(weights, rec.weights_at(step))


def check_loss_monitor(case, monitor, rec):
    counts = [c[0] for c in rec.iterations[1:]]
    assert monitor.steps == counts
    np.testing.assert_allclose(monitor.losses, rec.step_losses(), rtol=2e-4, atol=1e-6)
    assert monitor.diagnosis in LossMonitor.DIAGNOSES


def check_gaps(case, gaps, history):
    m = case.metric
    expected = [a - b for a, b in zip(history.history[m], history.history["val_" + m],
                                      strict=True)]
    np.testing.assert_allclose(gaps, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(history.history["generalization_gap"], expected,
                               rtol=1e-6, atol=1e-7)


def check_update_ratios(case, logger, rec):
    """Every trainable weight of the step's optimizers has a finite positive
    ratio, equal to ||w_s - w_{s-1}|| / ||w_{s-1}|| from the recorded
    weights around the last measured update."""
    variables = [v for o in case.optimizers for v in _trained_by(case, o)]
    keys = [weight_key(v) for v in variables]
    assert set(logger.ratios) == set(keys)
    assert all(math.isfinite(r) and r > 0 for r in logger.ratios.values())
    step = logger.step
    after, before = rec.weights_at(step), rec.weights_at(step - 1)
    index = {id(v): i for i, v in enumerate(case.model.weights)}
    for key, variable in zip(keys, variables, strict=True):
        if keys.count(key) > 1:
            continue  # two weights share the key: no single reference
        i = index[id(variable)]
        w0, w1 = before[i].astype("float64"), after[i].astype("float64")
        expected = np.linalg.norm(w1 - w0) / np.linalg.norm(w0)
        assert math.isclose(logger.ratios[key], expected, rel_tol=1e-3), key


def _trained_by(case, optimizer):
    if len(case.optimizers) == 1:
        return case.model.trainable_variables
    owner = case.model.head if optimizer is case.optimizers[0] else case.model.body
    return owner.trainable_variables


def layer_outputs_reference(case):
    """Each top-level layer's output on the probe batch, computed without
    our code: layer by layer for Sequential, by a Keras sub-model (or the
    nested model itself on the inputs) for Functional models."""
    model = case.model
    x = case.probe
    outputs = {}
    if isinstance(model, keras.Sequential):
        value = x
        for layer in model.layers:
            value = layer(value, training=False)
            outputs[layer.name] = keras.ops.convert_to_numpy(value)
        return outputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):  # a nested backbone on the input
            outputs[layer.name] = keras.ops.convert_to_numpy(layer(x, training=False))
            continue
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        if isinstance(model.input, dict):
            inputs = model.input
        sub = keras.Model(inputs, layer.output)
        outputs[layer.name] = keras.ops.convert_to_numpy(sub(x, training=False))
    return outputs


def check_activation_stats(case, stats):
    """Every top-level layer equals its reference; the monitor's other keys
    are the activation layers inside nested models, named by path."""
    reference = layer_outputs_reference(case)
    assert set(reference) <= set(stats)
    nested = {layer.name for layer in case.model.layers
              if isinstance(layer, keras.Model)}
    for name in set(stats) - set(reference):
        assert name.split("/")[0] in nested, name
    for name, values in reference.items():
        values = np.asarray(values, "float64")
        np.testing.assert_allclose(stats[name]["mean"], values.mean(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[name]["std"], values.std(),
                                   rtol=1e-4, atol=1e-5)


# -- making each callback ------------------------------------------------------


def make(name, case, tmp_path):
    """The callback `name` as the matrix runs it alone."""
    if name == "StepDecay":
        return StepDecay(factor=0.5, every=1)
    if name == "ExponentialDecay":
        return ExponentialDecay(decay=0.1, unit="step")
    if name == "InverseTimeDecay":
        return InverseTimeDecay(decay=1.0)
    if name == "LossMonitor":
        return LossMonitor(every=1, min_steps=1, verbose=0)
    if name == "OverfittingMonitor":
        return OverfittingMonitor(case.metric, verbose=0)
    if name == "UpdateRatioLogger":
        return UpdateRatioLogger(None, every=1, verbose=0)
    if name == "ActivationMonitor":
        return ActivationMonitor(case.probe, verbose=0)
    if name == "ExponentialMovingAverage":
        return ExponentialMovingAverage(decay=0.9, warmup=False, every=1)
    if name == "StochasticWeightAveraging":
        return StochasticWeightAveraging(start_epoch=0)
    if name == "SnapshotEnsemble":
        return SnapshotEnsemble(cycles=2)
    if name == "CheckpointEnsemble":
        return CheckpointEnsemble(every=1, keep=2)
    if name == "BackupAndRestore":
        return BackupAndRestore(tmp_path / "backup")
    if name == "TrainingDoctor":
        return TrainingDoctor(
            x_probe=case.probe, metric=case.metric, every=1,
            update_ratio_every=1, verbose=0,
        )
    raise KeyError(name)


NEEDS_VALIDATION = ("OverfittingMonitor", "TrainingDoctor")


def run_alone(name, factory, tmp_path, inputs=None, others=None, before=None):
    """Trains `factory()` with callback `name` alone and checks it against
    its reference; `inputs(case)` gives fit's data arguments. `others()`,
    if given, makes callbacks that are not ours for the same `fit` (after
    the recorder; with validation data). `before(case, callback)`, if
    given, runs between making the callback and the `fit` (not for
    BackupAndRestore, whose run makes its callbacks itself)."""
    case = factory()
    case.initial_rates = [_float(inner(o).learning_rate) for o in case.optimizers]
    if name == "BackupAndRestore":
        return run_backup_and_restore(case, tmp_path, inputs, factory, others)
    callback = make(name, case, tmp_path)
    if before is not None:
        before(case, callback)
    rec = Recorder(case.optimizers)
    history, caught = fit(case, [callback, rec, *(others() if others else [])],
                          inputs,
                          validation=name in NEEDS_VALIDATION or bool(others))
    assert history.epoch == list(range(EPOCHS))
    if name == "StepDecay":
        check_epoch_decay(case, rec, lambda lr0, e: lr0 * 0.5**e, caught)
    elif name == "InverseTimeDecay":
        check_epoch_decay(case, rec, lambda lr0, e: lr0 / (1 + e), caught)
    elif name == "ExponentialDecay":
        check_step_decay(case, rec, lambda lr0, s: lr0 * math.exp(-0.1 * s), caught)
    elif name == "ExponentialMovingAverage":
        check_ema(case, callback, rec, caught)
    elif name == "StochasticWeightAveraging":
        check_swa(case, callback, rec, caught)
    elif name == "SnapshotEnsemble":
        check_snapshots(case, callback, rec, [STEPS // 2, STEPS])
    elif name == "CheckpointEnsemble":
        check_snapshots(case, callback, rec, [STEPS_PER_EPOCH, STEPS])
    elif name == "LossMonitor":
        check_loss_monitor(case, callback, rec)
    elif name == "OverfittingMonitor":
        check_gaps(case, callback.gaps, history)
    elif name == "UpdateRatioLogger":
        check_update_ratios(case, callback, rec)
    elif name == "ActivationMonitor":
        check_activation_stats(case, callback.stats)
    elif name == "TrainingDoctor":
        check_doctor(case, callback, rec, history)
    return case, callback, rec, history


def check_doctor(case, doctor, rec, history):
    check_gaps(case, doctor.monitors["fit"].gaps, history)
    check_loss_monitor(case, doctor.monitors["loss"], rec)
    check_update_ratios(case, doctor.monitors["update_ratio"], rec)
    if "activations" in doctor.monitors:
        check_activation_stats(case, doctor.monitors["activations"].stats)
    assert isinstance(doctor.advice, list)


def run_backup_and_restore(case, tmp_path, inputs, rebuild, others=None):
    """Interrupted at epoch 1 and resumed equals uninterrupted. `others()`:
    callbacks that are not ours, made anew for each `fit` (after ours)."""

    def more():
        return others() if others else []

    validation = bool(others)
    reference = rebuild()
    fit(reference, [BackupAndRestore(tmp_path / "reference"), *more()], inputs,
        validation=validation)
    backup_dir = tmp_path / "backup"
    try:
        fit(case, [BackupAndRestore(backup_dir), Interrupt(1), *more()],
            inputs, validation=validation)
    except RuntimeError as error:
        assert "simulated preemption" in str(error)
    else:
        raise AssertionError("the interruption did not happen")
    interrupted = weights_of(case.model)
    backup = BackupAndRestore(backup_dir)
    fit(case, [backup, *more()], inputs, validation=validation)
    assert backup.restored_epoch is not None
    assert not any(
        np.array_equal(a, b) for a, b in zip(interrupted, weights_of(case.model),
                                             strict=True)
        if a.size > 1
    ), "the resumed fit did not train"
    assert_weights_close(weights_of(case.model), weights_of(reference.model),
                         rtol=1e-6, atol=1e-6)
    # delete_checkpoint=True: no backup is left (see the report on the lock)
    assert not list(backup_dir.glob("*.npz"))
    return case


def combined_set(case, tmp_path):
    return [
        TrainingDoctor(x_probe=case.probe, metric=case.metric, every=1,
                       update_ratio_every=1, verbose=0),
        ExponentialMovingAverage(decay=0.9, warmup=False, every=1),
        StochasticWeightAveraging(start_epoch=1),
        StepDecay(factor=0.5, every=1),
        BackupAndRestore(tmp_path / "combined"),
    ]


@contextlib.contextmanager
def without_arithmetic_rewrites():
    """TensorFlow: Grappler's arithmetic optimizer off, for new functions.

    Grappler rewrites a traced step's arithmetic (it hoists and regroups
    products and sums) depending on the graph around it. The doctor's
    `UpdateRatioLogger` moves the optimizer update into a `tf.cond` branch
    (its measuring probe), so on MobileNetV3Small the same computation is
    regrouped differently with and without the doctor and rounds differently:
    the weights differ by up to 3e-4 after 6 updates (not a change of what
    is computed: with this pass off both runs are bit-identical, and two
    runs without the doctor are bit-identical with it on). Other backends:
    a no-op.
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    name = "arithmetic_optimization"
    previous = tf.config.optimizer.get_experimental_options().get(name, True)
    tf.config.optimizer.set_experimental_options({name: False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({name: previous})


def run_combined(factory, tmp_path, inputs=None, x_probe=True,
                 arithmetic_rewrites=True):
    """The doctor + EMA + SWA + decay + BackupAndRestore, together.

    Everything finishes; the rates follow the decay's closed form; and the
    same run without the doctor ends with bit-identical weights (the
    monitors must not change training). `arithmetic_rewrites=False` runs
    both under `without_arithmetic_rewrites()` (TensorFlow: see there)."""
    if not arithmetic_rewrites:
        with without_arithmetic_rewrites():
            return run_combined(factory, tmp_path, inputs, x_probe)
    case = factory()
    case.initial_rates = [_float(inner(o).learning_rate) for o in case.optimizers]

    def averages():
        return [
            ExponentialMovingAverage(decay=0.9, warmup=False, every=1),
            StochasticWeightAveraging(start_epoch=1),
            StepDecay(factor=0.5, every=1),
        ]

    doctor = TrainingDoctor(
        x_probe=case.probe if x_probe else None, metric=case.metric,
        every=1, update_ratio_every=1, verbose=0,
    )
    with_doctor = [doctor, *averages(), BackupAndRestore(tmp_path / "a")]
    rec = Recorder(case.optimizers)
    history, caught = fit(case, [*with_doctor, rec], inputs, validation=True)
    assert history.epoch == list(range(EPOCHS))
    check_epoch_decay(case, rec, lambda lr0, e: lr0 * 0.5**e, caught)
    check_gaps(case, doctor.monitors["fit"].gaps, history)
    assert isinstance(doctor.advice, list)
    monitored = weights_of(case.model)
    monitored_raw = with_doctor[1].raw_weights()

    # the same run, the doctor left out, on the same model built again
    again = factory()
    without = [*averages(), BackupAndRestore(tmp_path / "b")]
    fit(again, without, inputs, validation=True)
    assert_weights_equal(weights_of(again.model), monitored)
    assert_weights_equal(without[0].raw_weights(), monitored_raw)
    return case, doctor, rec, history


