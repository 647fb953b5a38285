"""`StepDecay`: multiply the learning rate by `factor` every `every` units."""

from __future__ import annotations

from keras_trainopt.callbacks._decay_callback import DecayCallback
from keras_trainopt.callbacks._decay_callback import Unit
from keras_trainopt.schedules.step_decay import StepDecaySchedule


class StepDecay(DecayCallback):
    """Step decay of the learning rate during `fit`.

    Dropping the rate in steps is the simplest way to anneal it: a high rate
    makes fast early progress, and each drop lets the weights settle deeper
    into the minimum. The cs231n notes suggest halving every 5 epochs or
    multiplying by 0.1 every 20; watch the validation error and drop when it
    stops improving.

        lr(t) = max(min_learning_rate, lr0 * factor ** floor(t / every))

    With `warmup = w > 0`, the rate first rises linearly,
    `lr0 * (t + 1) / (w + 1)` for `t < w`, and the decay then runs on `t - w`.
    PyTorch's `StepLR(step_size=every, gamma=factor)` follows the same curve.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import StepDecay, nesterov_sgd
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(nesterov_sgd(0.1), loss="mse")
        >>> decay = StepDecay(factor=0.5, every=2)
        >>> history = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=5,
        ...                     callbacks=[decay], verbose=0)
        >>> [round(lr, 6) for lr in history.history["learning_rate"]]
        [0.1, 0.1, 0.05, 0.05, 0.025]

    Args:
        initial_learning_rate: `lr0` (> 0); `None` takes the optimizer's rate
            when training starts (kept for later `fit` calls and restarts).
        factor: multiplier applied at each drop, in (0, 1).
        every: units between drops (int >= 1).
        unit: `"epoch"` (t is the epoch index) or `"step"` (t is
            `optimizer.iterations`, the number of updates already applied).
        min_learning_rate: floor of the rate (>= 0).
        warmup: units of linear warm-up before the decay starts (int >= 0).
        verbose: 1 prints the rate as it is set.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate.
    """

    schedule_class = StepDecaySchedule

    def __init__(
        self,
        initial_learning_rate: float | None = None,
        factor: float = 0.5,
        every: int = 10,
        *,
        unit: Unit = "epoch",
        min_learning_rate: float = 0.0,
        warmup: int = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(
            initial_learning_rate,
            {"factor": factor, "every": every},
            unit=unit,
            min_learning_rate=min_learning_rate,
            warmup=warmup,
            verbose=verbose,
        )
