"""`CheckpointEnsemble`: an ensemble of the checkpoints of one ordinary run."""

from __future__ import annotations

import os
from typing import Any

from keras_trainopt._internal import optimizers
from keras_trainopt._internal import validation
from keras_trainopt.callbacks._snapshot_callback import SnapshotCallback


class CheckpointEnsemble(SnapshotCallback):
    """Keeps the weights of every `every`-th epoch end; ensembles the last ones.

    The cheapest ensemble of all: no change to training, only a copy of the
    weights now and then. Checkpoints of one run are less diverse than
    independently trained models or snapshot-ensemble cycles, but averaging
    the predictions of the last few usually still gains a little over the
    final weights (cs231n, "Model ensembles": "different checkpoints of a
    single model"). A snapshot is taken after epochs `every - 1`,
    `2 * every - 1`, ... (0-based), and only the `keep` most recent are kept.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import CheckpointEnsemble
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.05), loss="mse")
        >>> x, y = np.ones((64, 4)), np.ones((64, 1))
        >>> checkpoints = CheckpointEnsemble(every=2, keep=2)
        >>> _ = model.fit(x, y, batch_size=16, epochs=6, callbacks=[checkpoints],
        ...               verbose=0)
        >>> checkpoints.snapshot_steps  # after epochs 3 and 5 (4 steps each)
        [16, 24]
        >>> ensemble = checkpoints.ensemble()  # a keras.Model

    Args:
        every: epochs between snapshots (int >= 1).
        keep: how many of the most recent snapshots to keep (int >= 1).
        directory: also write each snapshot there (see `SnapshotCallback`);
            files of snapshots that are dropped are deleted.
        verbose: 1 to print a line per snapshot.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    model ensembles ("different checkpoints of a single model").
    """

    def __init__(
        self,
        every: int = 1,
        keep: int = 5,
        *,
        directory: str | os.PathLike[str] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(directory=directory, verbose=verbose)
        self.every = validation.check_int("every", every, low=1)
        self.keep = validation.check_int("keep", keep, low=1)

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        if (epoch + 1) % self.every:
            return
        self._take_snapshot(optimizers.get_iterations(self.model.optimizer))
        while len(self.snapshots) > self.keep:
            self._drop_oldest()

    def get_config(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "keep": self.keep,
            "directory": self.directory,
            "verbose": self.verbose,
        }
