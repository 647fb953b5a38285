"""`InverseTimeDecay`: the learning rate `lr0 / (1 + decay * t)`."""

from __future__ import annotations

from keras_trainopt.callbacks._decay_callback import DecayCallback
from keras_trainopt.callbacks._decay_callback import Unit
from keras_trainopt.schedules.inverse_time_decay import InverseTimeDecaySchedule


class InverseTimeDecay(DecayCallback):
    """1/t decay of the learning rate during `fit`.

    The rate falls like `1/t`: slower than exponential decay, so training
    keeps making progress late in a long run. After `n / decay` units the rate
    is `lr0 / (1 + n)`: `decay=0.1` halves it after 10 epochs and thirds it
    after 20.

        lr(t) = max(min_learning_rate, lr0 / (1 + decay * t))

    With `staircase=True` the rate is held within blocks of `every` units
    (`t` becomes `every * floor(t / every)`). With `warmup = w > 0`, the rate
    first rises linearly, `lr0 * (t + 1) / (w + 1)` for `t < w`, and the decay
    then runs on `t - w`. Keras' `InverseTimeDecay(lr0, decay_steps,
    decay_rate)` is the same curve with `decay = decay_rate / decay_steps`.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import InverseTimeDecay, nesterov_sgd
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(nesterov_sgd(0.1), loss="mse")
        >>> decay = InverseTimeDecay(decay=1.0)
        >>> history = model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=3,
        ...                     callbacks=[decay], verbose=0)
        >>> [round(lr, 5) for lr in history.history["learning_rate"]]
        [0.1, 0.05, 0.03333]

    Args:
        initial_learning_rate: `lr0` (> 0); `None` takes the optimizer's rate
            when training starts (kept for later `fit` calls and restarts).
        decay: the constant `k` per unit (>= 0).
        unit: `"epoch"` (t is the epoch index) or `"step"` (t is
            `optimizer.iterations`, the number of updates already applied).
        staircase: hold the rate constant within blocks of `every` units.
        every: block length for `staircase=True` (int >= 1).
        min_learning_rate: floor of the rate (>= 0).
        warmup: units of linear warm-up before the decay starts (int >= 0).
        verbose: 1 prints the rate as it is set.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    annealing the learning rate.
    """

    schedule_class = InverseTimeDecaySchedule

    def __init__(
        self,
        initial_learning_rate: float | None = None,
        decay: float = 0.1,
        *,
        unit: Unit = "epoch",
        staircase: bool = False,
        every: int = 1,
        min_learning_rate: float = 0.0,
        warmup: int = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(
            initial_learning_rate,
            {"decay": decay, "staircase": staircase, "every": every},
            unit=unit,
            min_learning_rate=min_learning_rate,
            warmup=warmup,
            verbose=verbose,
        )
