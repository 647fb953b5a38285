"""`StochasticWeightAveraging`: the equal average of end-of-epoch weights."""

from __future__ import annotations

import numbers
from typing import Any

import keras
from keras import ops

from keras_trainopt._internal import optimizers
from keras_trainopt._internal import training
from keras_trainopt._internal import validation
from keras_trainopt.averaging import composition
from keras_trainopt.averaging import formulas
from keras_trainopt.callbacks._weight_average_callback import BatchNormData
from keras_trainopt.callbacks._weight_average_callback import Tensor
from keras_trainopt.callbacks._weight_average_callback import WeightAverageCallback
from keras_trainopt.schedules import formulas as schedule_formulas


class StochasticWeightAveraging(WeightAverageCallback):
    """Stochastic Weight Averaging (SWA): the mean of the weights of late epochs.

    With a constant or cyclic learning rate, SGD keeps bouncing around the
    edge of a wide, flat region of the loss surface; the mean of the points it
    visits lies inside that region, where test error is lower (Izmailov et
    al. 2018: +0.6 to +1.4 points on CIFAR-100 at no extra training cost).
    From epoch `start_epoch` (0-based) on, the weights at the end of each
    epoch enter an equal average,

        swa = swa + (w - swa) / (n + 1),   n = epochs averaged so far,

    computed inside the train step right after the epoch's last update, so it
    is saved and restored with the optimizer by
    `keras.callbacks.BackupAndRestore`. Under mixed precision, an epoch in
    which `LossScaleOptimizer` skipped updates (non-finite gradients) ends
    on its last applied update; its weights are then averaged at the
    epoch's end, before validation. The cyclic rate below is indexed by
    applied updates, so after skips the epoch's last update runs a little
    above `low`.

    `swa_learning_rate` optionally takes over the learning rate from
    `start_epoch` on: a float holds it constant; a pair `(high, low)` makes it
    cyclic with one cycle per epoch, falling linearly from `high` to `low`
    over the epoch's updates (Izmailov et al., eq. 2), so each averaged
    point is taken at the low end of a cycle. Until `start_epoch` the rate is
    left to the optimizer and other callbacks.

    The model's BatchNorm statistics belong to the last raw weights, not to
    their average: pass training inputs as `batchnorm_data` and they are
    recomputed for the average at train end (Izmailov et al., section 3.2).
    With an `ExponentialMovingAverage` in the same list, each averages the
    trained weights (never the other's average) and the one later in the
    list is the average the model holds at train end; `raw_weights()` of
    both is the trained weights (`WeightAverageCallback`).

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import StochasticWeightAveraging
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.05), loss="mse")
        >>> x, y = np.ones((64, 4)), np.ones((64, 1))
        >>> swa = StochasticWeightAveraging(start_epoch=2, swa_learning_rate=0.01)
        >>> _ = model.fit(x, y, batch_size=16, epochs=5, callbacks=[swa], verbose=0)
        >>> swa.num_averaged  # epochs 2, 3 and 4
        3

    Args:
        start_epoch: the first epoch (0-based) whose final weights are
            averaged (int >= 0).
        swa_learning_rate: `None`, a float > 0 (constant) or a pair
            `(high, low)` with `high >= low > 0` (cyclic per epoch).
        validate_with_average: see `WeightAverageCallback`.
        apply_at_end: see `WeightAverageCallback`.
        batchnorm_data: see `WeightAverageCallback`.
        batchnorm_steps: see `WeightAverageCallback`.
        verbose: see `WeightAverageCallback`.
        skip_non_finite: see `WeightAverageCallback`.

    Reference: P. Izmailov, D. Podoprikhin, T. Garipov, D. Vetrov and
    A. G. Wilson, "Averaging Weights Leads to Wider Optima and Better
    Generalization", UAI 2018; PyTorch's `torch.optim.swa_utils`.
    """

    state_name = "swa"

    def __init__(
        self,
        start_epoch: int,
        swa_learning_rate: float | tuple[float, float] | list[float] | None = None,
        *,
        validate_with_average: bool = False,
        apply_at_end: bool = True,
        batchnorm_data: BatchNormData = None,
        batchnorm_steps: int | None = None,
        verbose: int = 0,
        skip_non_finite: bool = True,
    ) -> None:
        self.start_epoch = validation.check_int("start_epoch", start_epoch, low=0)
        self.swa_learning_rate = _check_swa_learning_rate(swa_learning_rate)
        super().__init__(
            validate_with_average=validate_with_average,
            apply_at_end=apply_at_end,
            batchnorm_data=batchnorm_data,
            batchnorm_steps=batchnorm_steps,
            verbose=verbose,
            skip_non_finite=skip_non_finite,
        )
        self._epoch_start = None  # optimizer step where the epoch began
        self._epoch_steps = None  # or -1 before start_epoch
        self._averaging = False  # this epoch is one of the averaged ones
        self._epoch_finished = False  # its last weights are averaged
        self._host_epoch = None  # PyTorch's eager step: (start, steps)

    def learning_rate(
        self, t: int, epoch_start: int, steps_per_epoch: int
    ) -> float | None:
        """The SWA rate of update `t` (0-based) in an epoch that began at
        step `epoch_start`; `None` when `swa_learning_rate` is `None`."""
        rate = self.swa_learning_rate
        if rate is None or isinstance(rate, float):
            return rate
        high, low = rate
        return float(
            schedule_formulas.linear_cycle(
                t, epoch_start, steps_per_epoch, high, low
            )
        )

    # -- inside the step -----------------------------------------------------

    def _extra_state(self, model: keras.Model) -> list[keras.Variable]:
        self._epoch_start = optimizers.add_state_variable(
            model, name=f"{self.state_name}_epoch_start"
        )
        self._epoch_steps = optimizers.add_state_variable(
            model, name=f"{self.state_name}_epoch_steps"
        )
        self._epoch_steps.assign(-1)
        return [self._epoch_start, self._epoch_steps]

    def _due(self, iterations: Tensor) -> Tensor:
        # the update that completes an epoch from start_epoch on
        return ops.logical_and(
            ops.greater(self._epoch_steps, 0),
            ops.equal(iterations, self._epoch_start + self._epoch_steps),
        )

    def _due_on_host(self, applied: int) -> bool:
        if self._host_epoch is None:  # once per epoch: after any restore
            start, steps = training.read_live(
                training.unsynced_model(self),
                [self._epoch_start, self._epoch_steps])
            self._host_epoch = (int(start), int(steps))
        start, steps = self._host_epoch
        return steps > 0 and applied == start + steps

    def _coefficient(self, num_averaged: Tensor, xp: Any = ops) -> Tensor:
        n = ops.cast(num_averaged, "float32") if xp is ops else num_averaged
        return formulas.equal_average_coefficient(n)

    def _before_update_in_step(self) -> None:
        """Sets the SWA rate for the coming update (epochs >= start_epoch)."""
        # Not `self.model`: on JAX Keras' property syncs the live state, and
        # a sync while a step is traced (a function traced in the middle of
        # an epoch) hands the next step the state from before this one.
        optimizer = training.unsynced_model(self).optimizer
        inner = optimizers.unwrap(optimizer)
        active = ops.greater(self._epoch_steps, 0)
        if isinstance(self.swa_learning_rate, float):
            rate = ops.convert_to_tensor(self.swa_learning_rate, "float32")
        else:
            high, low = self.swa_learning_rate
            t = ops.cast(inner.iterations, "float32")
            start = ops.cast(self._epoch_start, "float32")
            steps = ops.cast(ops.maximum(self._epoch_steps, 1), "float32")
            rate = schedule_formulas.linear_cycle(t, start, steps, high, low)
        current = ops.cast(inner.learning_rate, "float32")
        optimizers.assign_learning_rate_in_step(
            optimizer, ops.where(active, rate, current)
        )

    def _sets_learning_rate(self) -> bool:
        return self.swa_learning_rate is not None

    # -- Keras hooks ---------------------------------------------------------

    def _check_before_fit(self) -> None:
        if self.swa_learning_rate is not None:
            optimizers.check_settable_learning_rate(
                self.model.optimizer, type(self).__name__
            )
            validation.check_one_optimizer(
                self.model, "StochasticWeightAveraging",
                "sets `swa_learning_rate` in",
                "the SWA rate is never used",
                "Create it with `swa_learning_rate=None`, which averages "
                "without setting a rate, and put the rate schedule in the "
                "optimizers `train_step` applies.",
            )
        params = self.params or {}
        steps, epochs = params.get("steps"), params.get("epochs")
        if not steps and (epochs is None or self.start_epoch < epochs):
            # Keras fixes `steps` for the whole fit: refuse now, not after
            # the epochs before `start_epoch` were trained.
            raise ValueError(
                "StochasticWeightAveraging averages the weights at the end of "
                "each epoch, so it needs the number of steps per epoch, which "
                "Keras does not know for this data (a `tf.data` pipeline "
                "after `filter`, a generator). Pass `steps_per_epoch` to "
                "`fit` (with a dataset that `.repeat()`s), or state the "
                "dataset's length with `dataset.apply(tf.data.experimental."
                f"assert_cardinality(n))`. Received: steps={steps!r}"
            )

    def on_epoch_begin(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        super().on_epoch_begin(epoch, logs)
        self._host_epoch = None  # (start, steps) as the host last read them
        if epoch < self.start_epoch:
            self._epoch_steps.assign(-1)
            self._averaging = False
            return
        batches = int(self.params["steps"])  # known: `_check_before_fit`
        optimizer = self.model.optimizer
        applies = optimizers.get_applies(optimizer)
        start = optimizers.updates_from_applies(optimizer, applies)
        # the updates of this epoch: its batches, or fewer under gradient
        # accumulation (the epoch then ends after its last update)
        end = optimizers.updates_from_applies(optimizer, applies + batches)
        self._epoch_start.assign(start)
        self._epoch_steps.assign(end - start)
        self._averaging = True
        self._epoch_finished = False

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._finish_epoch()  # before the average is swapped in to validate
        super().on_test_begin(logs)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        self._finish_epoch()  # an epoch without validation

    def _finish_epoch(self) -> None:
        """Averages the epoch's last weights if the step did not.

        The step averages the update that ends the epoch, found by its
        count. Under mixed precision the updates `LossScaleOptimizer` skips
        (non-finite gradients) change no weight and are not counted, so
        that count is never reached: the weights the epoch ended with are
        averaged here instead, once per epoch, at its end (validation's
        `on_test_begin`, else `on_epoch_end`). Not in a batch-end hook:
        overriding `on_train_batch_end` makes Keras wait for every step on
        JAX and PyTorch.
        """
        if not (self._in_fit and self._averaging) or self._epoch_finished:
            return
        self._epoch_finished = True
        # The epoch's end from the variables, not from on_epoch_begin's: in an
        # epoch resumed in its middle by `BackupAndRestore`, on_epoch_begin
        # saw the step count of the backup, and the variables were put back
        # after it (issue 20).
        model = training.unsynced_model(self)
        start, steps = training.read_live(
            model, [self._epoch_start, self._epoch_steps]
        )
        if training.applied_updates(model) >= int(start) + int(steps):
            return
        # The average reads the weights: on JAX, write the live state back
        # to the variables first (they are purged mid-epoch); the trained
        # weights, not another averager's swapped in for validation.
        training.sync_state(model)
        other = composition.SWAPPED.get(model)
        if other is not None:
            other._swap_out()
        self._state.update(None)
        if other is not None:
            other._swap_in()

    def get_config(self) -> dict[str, Any]:
        rate = self.swa_learning_rate
        return {
            "start_epoch": self.start_epoch,
            "swa_learning_rate": list(rate) if isinstance(rate, tuple) else rate,
            **super().get_config(),
        }


def _check_swa_learning_rate(
    value: object,
) -> float | tuple[float, float] | None:
    name = "swa_learning_rate"
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return validation.check_real(name, value, low=0.0, low_open=True)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        high = validation.check_real(f"{name}[0]", value[0], low=0.0, low_open=True)
        low = validation.check_real(f"{name}[1]", value[1], low=0.0, low_open=True)
        if low > high:
            raise ValueError(
                f"`{name}` as a pair is (high, low) with high >= low. "
                f"Received: {name}={tuple(value)!r}"
            )
        return (high, low)
    raise TypeError(
        f"`{name}` must be None, a number, or a pair (high, low). "
        f"Received: {name}={value!r} (of type {type(value).__name__})"
    )
