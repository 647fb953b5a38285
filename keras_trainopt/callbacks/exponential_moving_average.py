"""`ExponentialMovingAverage`: a Polyak average of the weights, in the step."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_trainopt._internal import validation
from keras_trainopt.averaging import formulas
from keras_trainopt.callbacks._weight_average_callback import BatchNormData
from keras_trainopt.callbacks._weight_average_callback import Tensor
from keras_trainopt.callbacks._weight_average_callback import WeightAverageCallback


class ExponentialMovingAverage(WeightAverageCallback):
    """Keeps an exponential moving average (EMA) of the weights during `fit`.

    The weights at the end of training jitter around a minimum with the noise
    of the last mini-batches; their running average sits closer to its centre
    and usually evaluates a little better, at no cost in training (Polyak
    averaging; cs231n "Model ensembles"). After every optimizer update,
    inside the compiled train step,

        ema = d * ema + (1 - d) * w

    starting from the weights at train begin. With `warmup` the decay ramps up
    as in TensorFlow's `ExponentialMovingAverage(num_updates=s)`,

        d = min(decay, (1 + s) / (10 + s)),   s = steps so far

    so the random initial weights are soon forgotten. `every=k` averages only
    every k-th update, with that decay raised to the power k (the same time
    constant: `averaging.formulas.ema_decay`). An update whose weights are not
    all finite is left out of the average and counted in `num_skipped`, so
    the average is never poisoned by a NaN (`skip_non_finite=False` drops
    that check, one sum over the weights per averaged update, as Keras'
    `use_ema` has none).

    By default (`every=None`) the stride follows the time constant: every
    update (exact) while the EMA remembers under 250 updates (decay < 0.996),
    then 2, 4 and, from 1000 updates on (decay >= 0.999, the default), every
    8th (`averaging.formulas.default_every`). The strided average stays
    within about (k - 1) / 2 updates' worth of weight movement of the
    per-step one, under 0.4% of the EMA's own lag, at a k-th of the cost:
    the update is a few passes over all the weights, bound by memory
    traffic, about what Keras' own `use_ema=True` costs with `every=1`.

    Choose `decay` from the number of updates it should remember, about
    `1 / (1 - decay)`: 0.999 averages the last ~1000 steps. With few steps
    per epoch, a smaller decay (0.99) follows training more closely.

    The average follows the updates of `model.optimizer`: a model whose own
    `train_step` may apply other optimizers (a GAN holding `d_optimizer` and
    `g_optimizer`) is refused at train begin; the message points to Keras'
    `use_ema=True` for those optimizers.

    Only trainable weights are averaged; BatchNorm statistics keep their
    current values unless `batchnorm_data` is given (see the base class,
    `WeightAverageCallback`). At train end the model holds the average
    (`apply_at_end=True`); `raw_weights()` returns the weights training
    produced, and a later `fit` continues from them. With a
    `StochasticWeightAveraging` in the same list, each averages the trained
    weights and the one later in the list is the average the model holds at
    train end (`WeightAverageCallback`). The average survives an
    interrupted run resumed with `keras.callbacks.BackupAndRestore`: it is
    saved with the optimizer.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import ExponentialMovingAverage
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.05), loss="mse")
        >>> x, y = np.ones((64, 4)), np.ones((64, 1))
        >>> ema = ExponentialMovingAverage(decay=0.99, every=1)
        >>> _ = model.fit(x, y, batch_size=8, epochs=2, callbacks=[ema], verbose=0)
        >>> ema.num_averaged, ema.num_skipped  # 16 updates, all averaged
        (16, 0)
        >>> all(np.array_equal(w, a) for w, a in
        ...     zip(model.get_weights(), ema.averaged_weights()))
        True

    Args:
        decay: `d`, in (0, 1); the weight of the old average.
        warmup: ramp the decay up from 0.1 as above.
        every: average every `every`-th update (int >= 1); 1 for a
            per-step EMA. `None` (default): chosen from the decay as above;
            the attribute `every` holds the stride in use.
        validate_with_average: see `WeightAverageCallback`.
        apply_at_end: see `WeightAverageCallback`.
        batchnorm_data: see `WeightAverageCallback`.
        batchnorm_steps: see `WeightAverageCallback`.
        verbose: see `WeightAverageCallback`.
        skip_non_finite: see `WeightAverageCallback`.

    Reference: B. T. Polyak and A. B. Juditsky, "Acceleration of stochastic
    approximation by averaging", 1992; TensorFlow's
    `tf.train.ExponentialMovingAverage`; timm's `ModelEmaV3`.
    """

    state_name = "ema"

    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = True,
        every: int | None = None,
        *,
        validate_with_average: bool = False,
        apply_at_end: bool = True,
        batchnorm_data: BatchNormData = None,
        batchnorm_steps: int | None = None,
        verbose: int = 0,
        skip_non_finite: bool = True,
    ) -> None:
        self.decay = validation.check_real(
            "decay", decay, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.warmup = validation.check_bool("warmup", warmup)
        every = validation.check_int("every", every, low=1, allow_none=True)
        self.every = formulas.default_every(self.decay) if every is None else every
        super().__init__(
            validate_with_average=validate_with_average,
            apply_at_end=apply_at_end,
            batchnorm_data=batchnorm_data,
            batchnorm_steps=batchnorm_steps,
            verbose=verbose,
            skip_non_finite=skip_non_finite,
        )

    def decay_at(self, num_updates: int) -> float:
        """The decay of the EMA update that follows `num_updates` updates."""
        validation.check_int("num_updates", num_updates, low=0)
        return float(
            formulas.ema_decay(num_updates, self.decay, self.warmup, self.every)
        )

    def _check_before_fit(self) -> None:
        validation.check_one_optimizer(
            self.model, "ExponentialMovingAverage",
            "averages the weights after each update of",
            "nothing is averaged",
            "Average in the optimizers that `train_step` applies instead: "
            "create each with `use_ema=True` (e.g. "
            "`keras.optimizers.SGD(0.01, use_ema=True, ema_momentum=0.999)`, "
            "the same average as decay=0.999) and, after `fit`, call "
            "`optimizer.finalize_variable_values(variables)` with the "
            "variables it trains; or use "
            "`keras_trainopt.StochasticWeightAveraging`, which averages the "
            "weights each epoch ends with.",
        )

    def _due(self, iterations: Tensor) -> Tensor | None:
        if self.every == 1:
            return None
        return ops.equal(ops.mod(iterations, self.every), 0)

    def _due_on_host(self, applied: int) -> bool:
        return applied % self.every == 0

    def _coefficient(self, num_averaged: Tensor, xp: Any = ops) -> Tensor:
        n = ops.cast(num_averaged, "float32") if xp is ops else num_averaged
        return 1.0 - formulas.ema_decay(
            n, self.decay, self.warmup, self.every, xp=xp
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "every": self.every,
            **super().get_config(),
        }
