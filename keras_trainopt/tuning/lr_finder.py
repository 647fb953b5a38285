"""The learning-rate range test: sweep the rate, watch the loss, pick one."""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import Union

import keras
import numpy as np
import numpy.typing as npt

from keras_trainopt._internal import arrays
from keras_trainopt._internal import batches as batch_data

# print_msg has no public name in Keras 3.15; Keras' own callbacks use it
from keras_trainopt._internal import console
from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training_state
from keras_trainopt._internal import validation
from keras_trainopt.diagnostics import loss_curve
from keras_trainopt.tuning import suggestion_checks
from keras_trainopt.tuning import suggestions

if TYPE_CHECKING:  # matplotlib is imported only when `plot` is called
    import matplotlib.axes

# In-memory data: an array (or array-like), or a list or dict of arrays for
# a model with several inputs or outputs.
Arrays = Union[npt.ArrayLike, list[npt.ArrayLike], dict[str, npt.ArrayLike]]
# The names of `suggestions.RULES`.
Rule = Literal["minimum", "steepest", "valley"]


@dataclasses.dataclass
class LearningRateFinderResult:
    """What a learning-rate range test saw, and the rate it suggests.

    Returned by `find_learning_rate`; `plot()` draws the curve. The
    suggestions of every rule are kept, because they disagree by design: on a
    clean curve "steepest" sits where the loss falls fastest, "minimum" a
    decade below the lowest loss, "valley" inside the longest fall.

    >>> from keras_trainopt import LearningRateFinderResult
    >>> result = LearningRateFinderResult(
    ...     learning_rates=[1e-3, 1e-2, 1e-1], losses=[2.0, 1.0, 5.0],
    ...     smoothed_losses=[2.0, 1.5, 2.8], suggestion=1e-3,
    ...     suggestions={"minimum": 1e-3}, rule="minimum", stopped_early=True)
    >>> result.suggestion
    0.001

    Args:
        learning_rates: the rates tried, one per training step.
        losses: the loss of each step's batch (before its update).
        smoothed_losses: the bias-corrected moving average of `losses`.
        suggestion: the rate picked by the rule `rule`.
        suggestions: the rate every rule picks, by name.
        rule: the name of the rule behind `suggestion`.
        stopped_early: `True` if the sweep stopped because the loss diverged.
        warnings: sentences on why the suggestion may not be trusted: the
            loss hardly fell during the sweep, the suggestion sits within
            about a decade of either end of the sweep, or no higher rate
            lowered the loss beyond it (`tuning.suggestion_checks`).

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2015.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestion: float
    suggestions: dict[str, float]
    rule: str
    stopped_early: bool
    warnings: list[str] = dataclasses.field(default_factory=list)

    def plot(self, ax: matplotlib.axes.Axes | None = None) -> matplotlib.axes.Axes:
        """Draws the smoothed loss against the rate (log scale) with matplotlib.

        Returns the axes; marks every rule's suggestion, the chosen one bold.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.learning_rates, self.losses, color="#cccccc", lw=1,
                label="loss per step")
        ax.plot(self.learning_rates, self.smoothed_losses, color="#4c72b0",
                lw=2, label="smoothed")
        for name, rate in self.suggestions.items():
            chosen = name == self.rule
            ax.axvline(rate, ls="-" if chosen else "--",
                       lw=2 if chosen else 1, color="#dd8452" if chosen
                       else "#999999", label=f"{name}: {rate:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [v for v in self.smoothed_losses if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * finite[0]) * 1.1)
        ax.legend(fontsize="small")
        return ax


def find_learning_rate(
    model: keras.Model,
    x: Arrays | Any,
    y: Arrays | None = None,
    batch_size: int | None = None,
    lr_min: float = 1e-7,
    lr_max: float = 10.0,
    steps: int = 100,
    *,
    rule: Rule = "minimum",
    smoothing: float = 0.98,
    divergence_threshold: float = 4.0,
    seed: int | None = None,
    verbose: int = 0,
) -> LearningRateFinderResult:
    """Runs a learning-rate range test and suggests an initial rate.

    The learning rate is the hyperparameter that matters most, and the range
    test finds a good one in a fraction of an epoch (Smith 2015): train one
    step at each of `steps` rates rising exponentially from `lr_min` to
    `lr_max`,

        lr_i = lr_min * (lr_max / lr_min) ** (i / (steps - 1)),

    watch the loss fall, flatten and blow up, and pick a rate from the
    falling part (a `UserWarning` says when the smoothed loss never fell by
    10%, since on a plateau the rules pick noise, and when the suggestion
    sits at an edge of the sweep or where the curve did not fall: widen the
    range or try another rule). The loss is smoothed with a
    bias-corrected moving average (`smoothing`), and the sweep stops once
    the smoothed loss exceeds `divergence_threshold` times its minimum (a
    minimum above 0), or is not finite: `LossMonitor`'s rule,
    `diagnostics.loss_curve.is_diverging`. The rules in
    `keras_trainopt.tuning.suggestions` then pick a rate; `rule` chooses which
    one is the `suggestion`, and all of them are in `suggestions`.

    The data is what `model.fit` takes: arrays, drawn in shuffled batches
    of `batch_size` (pass after pass), or data that yields its own batches,
    a `tf.data.Dataset` (one that repeats included), a
    `keras.utils.PyDataset`, a PyTorch `DataLoader` or a generator, read
    in its own order and started over at its end where it can be.

    Under mixed precision, a step whose update `LossScaleOptimizer` skips
    (non-finite gradients; it halves its loss scale) is run again at the
    same rate on the same batch, so every rate tried makes exactly one
    update; after 32 skips in a row the sweep stops as diverged. Under
    gradient accumulation (`gradient_accumulation_steps=k` in the
    optimizer) each rate trains on `k` batches, one update, and its loss is
    their mean.

    The model is left as it was: its variables (weights, BatchNorm
    statistics, the layers' seed generators), the optimizer's variables and
    learning rate, and the global random state (Python's, NumPy's and
    Keras') are restored afterwards, also when the sweep raises.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import find_learning_rate
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 8)).astype("float32")
        >>> y = x @ rng.normal(size=(8, 1)).astype("float32")
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), loss="mse")
        >>> before = model.get_weights()
        >>> result = find_learning_rate(model, x, y, batch_size=256, steps=100,
        ...                             lr_min=1e-5, lr_max=10.0)
        >>> 0.01 < result.suggestion < 1.0  # gradient descent diverges above ~0.8
        True
        >>> all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        True

    Args:
        model: a compiled Keras model with an optimizer whose learning rate
            is a settable float (not a schedule).
        x, y: training inputs and targets, NumPy arrays (or lists/dicts of
            them) with at least `batch_size` samples; or, as `x` alone
            (`y` None), data that yields batches of `(inputs, targets)` or
            `(inputs, targets, sample_weights)`: a `tf.data.Dataset`, a
            `keras.utils.PyDataset`, a PyTorch `DataLoader`, a generator.
            A generator that runs out before `steps` updates is an error.
        batch_size: samples per step for arrays (int >= 1; `None`: 32);
            data that yields batches brings its own, and takes `None`.
        lr_min, lr_max: the sweep's range, `0 < lr_min < lr_max`.
        steps: number of rates, hence training steps (int >= 2). Batches are
            drawn in a shuffled order, cycling through the data.
        rule: "minimum" (default: the rate of the lowest smoothed loss / 10,
            as fastai's `minimum`), "steepest" (the steepest fall against
            log(rate), as PyTorch Lightning's suggestion up to 2.5.2) or
            "valley" (fastai's default). "minimum" is the default by
            measurement: trained at each rule's suggestion, it gave the best
            median accuracy on all three problems of
            `benchmarks/range_test_rules.py` and reached the target soonest
            on two (docs/search.md has the table).
        smoothing: the moving-average factor `beta` in [0, 1).
        divergence_threshold: stop when the smoothed loss exceeds this
            multiple of its minimum (> 1).
        seed: seed of the batch order of arrays (`None`: a fixed order
            from seed 0); data that yields batches keeps its own order.
        verbose: 1 to print the suggestion.

    Returns:
        A `LearningRateFinderResult`.

    Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural
    Networks", 2015 (arXiv:1506.01186), section 3.3; the learning-rate
    finders of fastai 2 (`fastai/callback/schedule.py`: `minimum`, `steep`,
    `valley`) and PyTorch Lightning (`tuner/lr_finder.py`); which rule
    matches which, and where they differ, is in
    `keras_trainopt.tuning.suggestions`.
    """
    _check_model(model)
    batch_size = validation.check_int("batch_size", batch_size, low=1,
                                      allow_none=True)
    lr_min = validation.check_float32(
        "lr_min", validation.check_real("lr_min", lr_min, low=0.0, low_open=True)
    )
    lr_max = validation.check_float32(
        "lr_max", validation.check_real("lr_max", lr_max, low=0.0, low_open=True)
    )
    if lr_min >= lr_max:
        raise ValueError(
            "`lr_min` must be smaller than `lr_max`. Received: "
            f"lr_min={lr_min:g}, lr_max={lr_max:g}"
        )
    steps = validation.check_int("steps", steps, low=2)
    rule = validation.check_choice("rule", rule, tuple(suggestions.RULES))
    smoothing = validation.check_real(
        "smoothing", smoothing, low=0.0, high=1.0, high_open=True
    )
    divergence_threshold = validation.check_real(
        "divergence_threshold", divergence_threshold, low=1.0, low_open=True
    )
    seed = validation.check_int("seed", seed, low=0, allow_none=True)
    verbose = validation.check_int("verbose", verbose, low=0)
    batches = _batches(x, y, batch_size, seed)

    rates = [
        float(lr_min * (lr_max / lr_min) ** (i / (steps - 1)))
        for i in range(steps)
    ]
    saved = training_state.capture(model)
    try:
        tried, losses, smoothed, stopped = _sweep(
            model, batches, rates, smoothing, divergence_threshold,
        )
    finally:
        training_state.restore(model, saved)
    picked = {name: fn(tried, smoothed) for name, fn in suggestions.RULES.items()}
    doubts = _doubts(smoothed) or suggestion_checks.suggestion_doubts(
        tried, smoothed, picked[rule], rule=rule, lr_max=lr_max
    )
    for sentence in doubts:
        warnings.warn(sentence, UserWarning, stacklevel=2)
    result = LearningRateFinderResult(
        learning_rates=tried,
        losses=losses,
        smoothed_losses=smoothed,
        suggestion=picked[rule],
        suggestions=picked,
        rule=rule,
        stopped_early=stopped,
        warnings=doubts,
    )
    if verbose:
        console.print_msg(
            f"find_learning_rate: {len(tried)} steps from {lr_min:g}"
            + (" (stopped: the loss diverged)" if stopped else f" to {lr_max:g}")
            + f"; suggestion ({rule}) {result.suggestion:.3g}; "
            + ", ".join(f"{k} {v:.3g}" for k, v in picked.items())
        )
    return result


# A curve whose smoothed loss never falls below this share of its start has
# no falling part: on a plateau the rules pick noise.
_MIN_FALL = 0.1


def _doubts(smoothed: list[float]) -> list[str]:
    finite = [v for v in smoothed if math.isfinite(v)]
    if not finite or finite[0] <= 0:
        return []
    fall = 1.0 - min(finite) / finite[0]
    if fall >= _MIN_FALL:
        return []
    return [
        f"find_learning_rate: the smoothed loss fell by only {fall:.1%} "
        f"during the sweep (from {finite[0]:.4g} to at best "
        f"{min(finite):.4g}), so the curve has no clear falling part and the "
        "suggestion is unreliable. Run more `steps`, or start the sweep "
        "lower (`lr_min`) or end it higher (`lr_max`)."
    ]


def _batches(x, y, batch_size, seed):
    """The sweep's batches, `(x, y, sample_weight)`, checked before any step."""
    if batch_data.is_batches(x):
        batch_data.refuse_array_arguments(x, y=y, batch_size=batch_size,
                                          seed=seed)
        return _dataset_batches(x)
    if isinstance(x, (str, bytes)) or not arrays.is_arrays(x):
        batch_data.refuse_other_data(x)
    batch_size = 32 if batch_size is None else batch_size
    n = arrays.num_samples(x)
    if n < batch_size:
        raise ValueError(
            f"`batch_size` must be at most the number of samples ({n}): the "
            f"sweep trains on whole batches. Received: batch_size={batch_size}"
        )
    return _array_batches(x, y, n, batch_size, seed)


def _array_batches(x, y, n, batch_size, seed):
    """Shuffled whole batches, reshuffled at each pass over the data."""
    batches_per_pass = n // batch_size
    for batch in itertools.count():
        if batch % batches_per_pass == 0:  # a new pass, reshuffled
            order = np.random.default_rng(
                (0 if seed is None else seed) + batch
            ).permutation(n)
        start = (batch % batches_per_pass) * batch_size
        index = order[start:start + batch_size]
        yield (arrays.take(x, index),
               None if y is None else arrays.take(y, index), None)


def _dataset_batches(data):
    """The batches of `data`, started over at its end where it can be."""
    count = 0
    for batch in batch_data.cycle(data):
        count += 1
        yield keras.utils.unpack_x_y_sample_weight(batch)
    raise ValueError(
        f"`x` ran out after {count} batches, before the sweep's last rate: "
        + ("it yields no batches. " if count == 0 else
           "a generator cannot be started over. ")
        + "Pass a tf.data.Dataset or PyDataset (read again at its end), "
        "one that repeats, or fewer `steps`."
    )


def _sweep(
    model: keras.Model,
    batches,
    rates: list[float],
    smoothing: float,
    threshold: float,
) -> tuple[list[float], list[float], list[float], bool]:
    smoother = loss_curve.RunningSmooth(beta=smoothing)
    tried, losses, smoothed = [], [], []
    best = math.inf
    # Under gradient accumulation an update takes `k` batches: each rate
    # trains until one update is applied (the first, until the optimizer's
    # next), and its loss is the mean over those batches, all on the
    # weights before it.
    k = optimizers.accumulation_steps(model.optimizer)
    applies = optimizers.get_applies(model.optimizer)
    for rate in rates:
        optimizers.set_learning_rate(model.optimizer, rate)
        batch_losses, applied = [], True
        for _ in range(k - applies % k):
            loss, applied = _train_step(model, *next(batches))
            batch_losses.append(loss)
            applies += 1
            if not applied:
                break
        loss = float(np.mean(batch_losses))
        tried.append(rate)
        losses.append(loss)
        value = smoother.update(loss) if math.isfinite(loss) else math.inf
        smoothed.append(value)
        if not applied or loss_curve.is_diverging(value, best, threshold):
            return tried, losses, smoothed, True
        best = min(best, value)
    return tried, losses, smoothed, False


# A LossScaleOptimizer halves its scale at each skipped update; after this
# many in a row the gradients are not finite at any usable scale.
_MAX_SKIPPED = 32


def _train_step(
    model: keras.Model, x: Arrays, y: Arrays | None, sample_weight=None
) -> tuple[float, bool]:
    """One update on the batch: `(loss, whether the update was applied)`.

    Under mixed precision `LossScaleOptimizer` skips an update whose
    gradients are not finite (and halves its loss scale): the step is then
    run again, at the same rate on the same batch, so that every rate of the
    sweep makes exactly one update. Its loss is the same, as the weights are.
    """
    for _ in range(_MAX_SKIPPED + 1):
        scale = optimizers.loss_scale(model.optimizer)
        loss = float(model.train_on_batch(
            x, y, sample_weight=sample_weight, return_dict=True)["loss"])
        if scale is None or not math.isfinite(loss):
            return loss, True
        if optimizers.loss_scale(model.optimizer) >= scale:
            return loss, True
    return loss, False


def _check_model(model: object) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a compiled keras.Model. Received: "
            f"model={model!r} (of type {type(model).__name__})"
        )
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            "`model` must be compiled with an optimizer before the range "
            "test: call `model.compile(optimizer=..., loss=...)` first."
        )
    optimizers.check_settable_learning_rate(model.optimizer, "find_learning_rate")

