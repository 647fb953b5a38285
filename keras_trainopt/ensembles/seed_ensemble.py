"""Training the same model from several seeds: a seed ensemble."""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import keras

from keras_trainopt._internal import validation
from keras_trainopt.ensembles.ensemble_model import EnsembleModel


def fit_seed_ensemble(
    build_model: Callable[[], keras.Model],
    x: Any = None,  # as for `fit`: arrays, a tf.data.Dataset, a PyDataset, ...
    y: Any = None,
    *,
    seeds: int | list[int] | tuple[int, ...] = 5,
    **fit_kwargs: Any,
) -> tuple[EnsembleModel, list[keras.callbacks.History]]:
    """Trains one model per seed and returns their `EnsembleModel`.

    The classic ensemble: the same architecture and hyperparameters, trained
    from different random initializations (and data orders). Each member
    makes different errors, so their averaged prediction is better than the
    typical member, with diminishing returns as members are added (cs231n,
    "Model ensembles"). For each seed, `keras.utils.set_random_seed(seed)` is
    called, then `build_model()` must return a *compiled* model, which is
    trained with `model.fit(x, y, **fit_kwargs)`.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_trainopt import fit_seed_ensemble
        >>> def build_model():
        ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        ...     model.compile(keras.optimizers.SGD(0.05), loss="mse")
        ...     return model
        >>> x, y = np.ones((32, 4)), np.ones((32, 1))
        >>> ensemble, histories = fit_seed_ensemble(
        ...     build_model, x, y, seeds=3, epochs=2, verbose=0)
        >>> len(ensemble.members), len(histories)
        (3, 3)

    Args:
        build_model: a function of no arguments returning a new compiled
            `keras.Model`.
        x, y: the training data, as for `fit`.
        seeds: the number of members (int >= 1, seeds 0, 1, ...) or a list
            of integer seeds.
        **fit_kwargs: passed to every member's `fit` (epochs, batch_size,
            callbacks, validation_data, ...). `callbacks` may also be a
            function of the seed that returns the member's own list, which
            is the way to give each member callbacks that keep state:
            `callbacks=lambda seed: [TrainingDoctor(f"logs/seed_{seed}")]`.
            A list is shared by all the members: a keras_trainopt callback
            that keeps a record of its run (a monitor, an average, an
            ensemble's snapshots) then mixes the members' (a `UserWarning`
            says so), and a shared `BackupAndRestore` is refused, as it
            would resume one member from another's backup.

    Returns:
        `(ensemble, histories)`: the `EnsembleModel` of the trained members
        and their `History` objects, in the order of `seeds`.

    Reference: cs231n, "Neural Networks Part 3: Learning and Evaluation",
    model ensembles ("same model, different initializations").
    """
    if not callable(build_model):
        raise TypeError(
            "`build_model` must be a function returning a compiled model. "
            f"Received: build_model={build_model!r}"
        )
    seeds = _check_seeds(seeds)
    unknown = sorted(set(fit_kwargs) - _FIT_ARGUMENTS)
    if unknown:
        # refused before any member trains; `fit` would refuse them in
        # words that differ per backend and name no argument
        raise TypeError(
            f"{', '.join(f'`{name}`' for name in unknown)}: not argument(s) of "
            "`model.fit`, which gets every keyword argument of "
            f"fit_seed_ensemble but build_model and seeds. Received: "
            f"{', '.join(f'{name}={fit_kwargs[name]!r}' for name in unknown)}"
        )
    # Keras' `fit` takes these unchecked and fails deep inside (`epochs="x"`)
    for name, low in _FIT_COUNTS.items():
        if name in fit_kwargs:
            validation.check_int(name, fit_kwargs[name], low=low,
                                 allow_none=name != "epochs")
    per_member = fit_kwargs.pop("callbacks", None)
    if not callable(per_member):
        _check_shared_callbacks(per_member, len(seeds))
    members, histories = [], []
    for seed in seeds:
        if callable(per_member):
            fit_kwargs["callbacks"] = per_member(seed)
        elif per_member is not None:
            fit_kwargs["callbacks"] = per_member
        keras.utils.set_random_seed(seed)
        model = build_model()
        if not isinstance(model, keras.Model):
            raise TypeError(
                "`build_model` must return a keras.Model. Received: "
                f"{model!r} (of type {type(model).__name__}) for seed {seed}"
            )
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`build_model` must return a compiled model (call "
                f"`model.compile(...)` in it); the model for seed {seed} has "
                "no optimizer."
            )
        histories.append(model.fit(x, y, **fit_kwargs))
        members.append(model)
    return EnsembleModel(members, name="seed_ensemble"), histories


# What `model.fit` takes besides the data; every backend's trainer agrees.
_FIT_ARGUMENTS = frozenset(inspect.signature(keras.Model.fit).parameters) - {
    "self", "x", "y"}
_FIT_COUNTS = {"epochs": 1, "batch_size": 1, "steps_per_epoch": 1,
               "initial_epoch": 0}


def _check_shared_callbacks(callbacks, members):
    """Before any member trains: a shared `BackupAndRestore` refused, a
    shared record-keeping callback of ours warned about."""
    if members < 2 or not callbacks:
        return
    from keras_trainopt.callbacks.backup_and_restore import BackupAndRestore

    way_out = ("pass `callbacks` as a function of the seed that returns "
               "fresh ones for each member, e.g. `callbacks=lambda seed: "
               "[...]`")
    for callback in callbacks:
        name = type(callback).__name__
        if isinstance(callback, BackupAndRestore):
            raise ValueError(
                f"A BackupAndRestore in `callbacks` is shared by the "
                f"{members} members: after an interruption it would resume "
                "the first member from the backup of the member that was "
                f"interrupted. Give each its own backup_dir: {way_out} "
                "(`BackupAndRestore(f'backups/{seed}')`)."
            )
        if (type(callback).__module__.startswith("keras_trainopt.")
                and hasattr(callback, "get_state")
                and not _is_decay(callback)):
            warnings.warn(
                f"{name} in `callbacks` is shared by the {members} members: "
                "what it records (readings, averages, snapshots) mixes them, "
                f"and it ends with the last member's. To keep one per member, "
                f"{way_out}.",
                stacklevel=3,
            )


def _is_decay(callback):
    """A decay keeps no record of a run: it is a function of the step."""
    from keras_trainopt.callbacks._decay_callback import DecayCallback

    return isinstance(callback, DecayCallback)


def _check_seeds(seeds: object) -> list[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return list(range(validation.check_int("seeds", seeds, low=1)))
    if isinstance(seeds, (list, tuple)) and seeds:
        for i, seed in enumerate(seeds):
            validation.check_int(f"seeds[{i}]", seed, low=0)
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"`seeds` must be distinct. Received: seeds={list(seeds)}"
            )
        return [int(s) for s in seeds]
    raise TypeError(
        "`seeds` must be a positive integer or a non-empty list of integers. "
        f"Received: seeds={seeds!r} (of type {type(seeds).__name__})"
    )
