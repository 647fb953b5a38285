"""Loss curves for several learning rates, side by side: cs231n's first chart."""

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_trainopt._internal import arrays
from keras_trainopt._internal import batches as batch_data
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import validation
from keras_trainopt.callbacks.loss_monitor import LossMonitor
from keras_trainopt.reporting import tags
from keras_trainopt.reporting import tensorboard

if typing.TYPE_CHECKING:  # matplotlib is imported when `plot` runs
    import matplotlib.axes

# cs231n's four curves, and too few steps to tell.
VERDICTS = ("too_low", "good", "high", "too_high", "insufficient_data")
# A curve whose recent loss exceeds the best rate's by this factor, at a
# higher rate, is "high": it fell fast, then got stuck at a worse value.
HIGH_FACTOR = 1.25
# A curve at a lower rate than the best whose loss fell by less than this
# fraction of what the best one's fell is "too low".
LOW_FRACTION = 0.25


def _run_name(rate):
    return f"lr={rate:g}"


@dataclasses.dataclass
class LearningRateComparison:
    """The loss curves of one model trained at several learning rates.

    Returned by `compare_learning_rates`; `plot()` draws one labelled line
    per rate.

    >>> from keras_trainopt.tuning.lr_comparison import (
    ...     LearningRateComparison)
    >>> result = LearningRateComparison(
    ...     learning_rates=[0.01, 0.1], epoch_losses={0.01: [2.0, 1.9],
    ...     0.1: [1.2, 0.6]}, val_losses=None, steps={0.01: [1, 2],
    ...     0.1: [1, 2]}, step_losses={0.01: [2.0, 1.9], 0.1: [1.2, 0.6]},
    ...     diagnoses={0.01: "too_low", 0.1: "good"},
    ...     reasons={0.01: "...", 0.1: "..."}, recommended=0.1)
    >>> result.recommended
    0.1

    Args:
        learning_rates: the rates, in the order given.
        epoch_losses: `{rate: [training loss of each epoch]}`.
        val_losses: `{rate: [validation loss of each epoch]}`, or `None`
            without validation data.
        steps, step_losses: `{rate: [optimizer step]}` and `{rate: [loss
            of that step]}`, from `LossMonitor(every=1)`.
        diagnoses: `{rate: one of VERDICTS}`: "too_low", "good", "high"
            (fell, then stuck above the best rate's loss), "too_high" or
            "insufficient_data" (fewer than 20 steps).
        reasons: `{rate: the evidence, in words}`.
        recommended: the rate with the lowest final validation loss (the
            training loss without validation data) among those not "too
            high"; `None` if every rate was.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    the loss-versus-epoch chart for low, high, very high and good rates.
    """

    learning_rates: list[float]
    epoch_losses: dict[float, list[float]]
    val_losses: dict[float, list[float]]
    steps: dict[float, list[int]]
    step_losses: dict[float, list[float]]
    diagnoses: dict[float, str]
    reasons: dict[float, str]
    recommended: float | None

    def plot(
        self,
        ax: "matplotlib.axes.Axes | None" = None,
        per: typing.Literal["step", "epoch"] = "step",
    ) -> "matplotlib.axes.Axes":
        """One labelled line per rate (matplotlib); returns the axes.

        Args:
            ax: matplotlib axes to draw on (`None`: a new figure).
            per: `"step"` (the loss of each step) or `"epoch"`.
        """
        per = validation.check_choice("per", per, ("step", "epoch"))
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        finite = []
        for rate in self.learning_rates:
            if per == "step":
                xs, ys = self.steps[rate], self.step_losses[rate]
            else:
                ys = self.epoch_losses[rate]
                xs = list(range(1, len(ys) + 1))
            label = f"{_run_name(rate)} ({self.diagnoses[rate]})"
            if rate == self.recommended:
                label += ", recommended"
            ax.plot(xs, ys, lw=2 if rate == self.recommended else 1,
                    label=label)
            finite += [v for v in ys if math.isfinite(v)]
        ax.set_xlabel("step" if per == "step" else "epoch")
        ax.set_ylabel("training loss")
        if finite:  # a blown-up curve would flatten the others
            low, start = min(finite), float(np.median(finite))
            ax.set_ylim(low * 0.9 if low > 0 else low - 0.1,
                        min(max(finite), 4 * max(start, 1e-12)) * 1.1)
        ax.legend(fontsize="small")
        return ax


def _check_rates(learning_rates):
    rates = None
    if isinstance(learning_rates, (list, tuple)) and learning_rates:
        try:
            rates = [float(rate) for rate in learning_rates
                     if not isinstance(rate, (bool, str))]
        except (TypeError, ValueError):
            rates = None
    if (not rates or len(rates) != len(learning_rates)
            or not all(math.isfinite(r) and r > 0 for r in rates)):
        raise ValueError(
            "`learning_rates` must be a non-empty sequence of positive "
            f"floats. Received: learning_rates={learning_rates!r}"
        )
    if len(set(rates)) != len(rates):
        raise ValueError(
            "`learning_rates` must not repeat a rate. "
            f"Received: learning_rates={learning_rates!r}"
        )
    return rates


def _built(build_model):
    model = build_model()
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`build_model` must return a compiled keras.Model. "
            f"Received: {model!r}"
        )
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`build_model` must return a compiled model (call "
            "model.compile(optimizer, loss) in it); its optimizer's rate is "
            "replaced by each of `learning_rates`."
        )
    optimizers.check_settable_learning_rate(model.optimizer,
                                            "compare_learning_rates")
    return model


def compare_learning_rates(
    build_model: Callable[[], keras.Model],
    x: Any,  # arrays, samples first, or data that yields batches
    y: Any = None,
    learning_rates: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
    epochs: int = 3,
    *,
    validation_data: Any = None,
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    seed: int = 0,
    log_dir: str | os.PathLike | None = None,
    verbose: int = 0,
) -> LearningRateComparison:
    """Trains one fresh model per learning rate and compares the curves.

    The first chart of cs231n's babysitting: the loss over time for a few
    rates on one plot, which tells a rate too low (slow, linear), a high one
    (fast, then stuck at a worse value), one far too high (exploding) and a
    good one apart at a glance. Every rate starts from the same initial
    weights (those of the first model built, copied into the others) and
    sees the same batches in the same order (for arrays, one permutation
    of the data per epoch, drawn from `seed`), so the rate is the only
    difference. Data that yields its own batches (a `tf.data.Dataset`, a
    `keras.utils.PyDataset`, a generator function's dataset) is read as
    `fit` reads it, once per epoch and rate: for the same batches at every
    rate, give one that yields them in the same order each time it is read
    (a fixed shuffle seed and `reshuffle_each_iteration=False` for
    `tf.data`).
    Each curve is judged by `LossMonitor`'s rules (reading every step; a
    diverged run stops early), and a "good" curve at a rate above the
    recommended one whose recent loss is more than 1.25x the recommended
    rate's is "high".

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import compare_learning_rates
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 8)).astype("float32")
        >>> y = x @ rng.normal(size=(8, 1)).astype("float32")
        >>> def build_model():
        ...     model = keras.Sequential([keras.Input((8,)),
        ...                               keras.layers.Dense(1)])
        ...     model.compile(keras.optimizers.SGD(), loss="mse")
        ...     return model
        >>> result = compare_learning_rates(
        ...     build_model, x, y, learning_rates=(1e-4, 0.05, 5.0), epochs=3,
        ...     batch_size=16)
        >>> result.diagnoses
        {0.0001: 'too_low', 0.05: 'good', 5.0: 'too_high'}
        >>> result.recommended
        0.05

    Args:
        build_model: called with no arguments, returns a compiled
            `keras.Model` whose optimizer has a settable learning rate
            (not a schedule); called once per rate.
        x, y: training data, NumPy arrays (or lists or dicts of them, for
            several inputs) with the samples first; or, as `x` alone (`y`
            None), data that yields `(inputs, targets)` batches, as `fit`
            takes it: a `tf.data.Dataset`, a `keras.utils.PyDataset`.
        learning_rates: the rates to compare (positive, no repeats).
        epochs: epochs per rate.
        validation_data: `(x_val, y_val)`, a dataset, or `None` (as `fit`).
        batch_size: the batch size for arrays (`None`: 32); data that
            yields batches brings its own, and takes `None`.
        steps_per_epoch: batches per epoch (`None`: the whole data); needed
            for data that never ends (a `tf.data.Dataset` that repeats).
        seed: draws the batch order (and seeds Keras before each build).
        log_dir: with a folder, one TensorBoard run per rate, `lr=<rate>`
            (e.g. `lr=0.01`), with `loss_monitor/batch_loss` per step and
            `epoch_loss` (and `epoch_val_loss`) per epoch, so the curves
            overlay in TensorBoard.
        verbose: passed to `fit`.

    Returns:
        A `LearningRateComparison`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation"
    (the effect of the learning rate on the loss curve).
    """
    if not callable(build_model) or isinstance(build_model, keras.Model):
        raise TypeError(
            "`build_model` must be a function that returns a compiled "
            "model (a fresh one per call; a model itself is one model, not "
            f"one per rate). Received: build_model={build_model!r}"
        )
    rates = _check_rates(learning_rates)
    epochs = validation.check_int("epochs", epochs, low=1)
    batch_size = validation.check_int("batch_size", batch_size, low=1,
                                      allow_none=True)
    steps_per_epoch = validation.check_int(
        "steps_per_epoch", steps_per_epoch, low=1, allow_none=True)
    seed = validation.check_int("seed", seed, low=0)
    log_dir = validation.check_path("log_dir", log_dir, allow_none=True)
    verbose = validation.check_int("verbose", verbose, low=0)
    evaluated, fits = _data_plan(x, y, batch_size, steps_per_epoch, seed,
                                 epochs)
    initial = None
    found = {key: {} for key in ("epoch", "val", "steps", "step", "verdict",
                                 "reason", "recent", "fall")}
    for rate in rates:
        keras.utils.set_random_seed(seed)
        model = _built(build_model)
        if initial is None:
            initial = model.get_weights()
            start = float(model.evaluate(
                **evaluated, verbose=0, return_dict=True)["loss"])
        else:
            model.set_weights(initial)
        optimizers.set_learning_rate(model.optimizer, rate)
        monitor = LossMonitor(every=1, verbose=0)
        epoch_losses, val_losses = [], []
        for fit_data in fits:
            history = model.fit(
                **fit_data(), shuffle=False, validation_data=validation_data,
                callbacks=[monitor], verbose=verbose,
            )
            epoch_losses += [float(v) for v in history.history["loss"]]
            val_losses += [float(v) for v in history.history.get("val_loss",
                                                                  [])]
            if model.stop_training:  # diverged: LossMonitor stopped it
                break
        found["epoch"][rate], found["val"][rate] = epoch_losses, val_losses
        found["steps"][rate] = list(monitor.steps)
        found["step"][rate] = list(monitor.losses)
        found["reason"][rate] = monitor.reason
        found["recent"][rate] = (
            val_losses[-1] if val_losses else epoch_losses[-1])
        found["fall"][rate] = start - epoch_losses[-1]
        found["verdict"][rate] = {
            "learning_rate_too_high": "too_high",
            "learning_rate_too_low": "too_low",
            "insufficient_data": "insufficient_data",
        }.get(monitor.diagnosis, "good")
    recommended = _recommend(rates, found)
    _compare(rates, found, recommended)
    if log_dir is not None:
        _write(log_dir, rates, found)
    return LearningRateComparison(
        learning_rates=rates,
        epoch_losses=found["epoch"],
        val_losses=found["val"] if validation_data is not None else None,
        steps=found["steps"],
        step_losses=found["step"],
        diagnoses=found["verdict"],
        reasons=found["reason"],
        recommended=recommended,
    )


def _data_plan(x, y, batch_size, steps_per_epoch, seed, epochs):
    """The data arguments of `evaluate` (the loss before training), and a
    function per `fit` call that gives its own, checked: arrays get one
    `fit` per epoch on that epoch's permutation (copied when it runs);
    data that yields batches one `fit` of all the epochs, which reads it on
    from one epoch to the next as `fit` does."""
    if batch_data.is_batches(x):
        batch_data.refuse_array_arguments(x, y=y, batch_size=batch_size)
        batch_data.refuse_endless(x, "x", steps_per_epoch, "steps_per_epoch",
                                  "an epoch")
        return ({"x": x, "steps": steps_per_epoch},
                [lambda: {"x": x, "epochs": epochs,
                          "steps_per_epoch": steps_per_epoch}])
    if isinstance(x, (str, bytes)) or not arrays.is_arrays(x):
        batch_data.refuse_other_data(x)
    n = arrays.num_samples(x)
    if y is not None and arrays.num_samples(y, "y") != n:
        raise ValueError(
            "`x` and `y` must hold the same number of samples. Received: "
            f"{n} and {arrays.num_samples(y, 'y')}"
        )
    batch_size = 32 if batch_size is None else batch_size
    orders = [np.random.default_rng([seed, epoch]).permutation(n)
              for epoch in range(epochs)]

    def epoch_fit(epoch):
        return lambda: {
            "x": arrays.take(x, orders[epoch]),
            "y": None if y is None else arrays.take(y, orders[epoch]),
            "batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
            "epochs": epoch + 1, "initial_epoch": epoch,
        }

    return ({"x": x, "y": y, "batch_size": batch_size,
             "steps": steps_per_epoch}, [epoch_fit(e) for e in range(epochs)])


def _recommend(rates, found):
    usable = [rate for rate in rates if found["verdict"][rate] != "too_high"
              and found["recent"][rate] is not None
              and math.isfinite(found["recent"][rate])]
    if not usable:
        return None
    return min(usable, key=lambda rate: (found["recent"][rate], -rate))


def _compare(rates, found, recommended):
    """Next to the recommended rate: "high" above it, "too low" below."""
    if recommended is None:
        return
    best = found["recent"][recommended]
    best_fall = found["fall"][recommended]
    for rate in rates:
        fall = found["fall"][rate]
        if (rate < recommended and found["verdict"][rate] == "good"
                and math.isfinite(fall) and best_fall > 0
                and fall < LOW_FRACTION * best_fall):
            found["verdict"][rate] = "too_low"
            found["reason"][rate] = (
                f"the epoch loss fell by {fall:.4g} from the initial loss, "
                f"less than {LOW_FRACTION:g}x the {best_fall:.4g} of "
                f"lr={recommended:g} on the same batches: raise the rate")
    for rate in rates:
        recent = found["recent"][rate]
        if (rate > recommended and found["verdict"][rate] == "good"
                and recent is not None and best > 0
                and recent > HIGH_FACTOR * best):
            found["verdict"][rate] = "high"
            found["reason"][rate] = (
                f"the loss fell, then stayed at {recent:.4g}, more than "
                f"{HIGH_FACTOR:g}x the {best:.4g} of lr={recommended:g}: a "
                "high rate gets stuck at a worse value")


def _write(log_dir, rates, found):
    for rate in rates:
        writer = tensorboard.open_run(log_dir, _run_name(rate))
        if writer is None:
            continue
        try:
            writer.scalars(tags.LOSS_BATCH, found["steps"][rate],
                           found["step"][rate])
            epochs = range(len(found["epoch"][rate]))
            writer.scalars(tags.EPOCH_LOSS, epochs, found["epoch"][rate])
            if found["val"][rate]:
                writer.scalars(tags.EPOCH_VAL_LOSS, epochs,
                               found["val"][rate])
            writer.text(tags.LOSS_DIAGNOSIS,
                        f"**{found['verdict'][rate]}**: "
                        f"{found['reason'][rate]}", 0)
        finally:
            tensorboard.close_run(writer)

