"""The whole state of a training run: read, put back, written to a file.

Two features need every value a training step reads or writes:
`find_learning_rate` takes them before its sweep and puts them back after
it, so the model is left as it was; `BackupAndRestore` writes them to disk
each epoch and loads them when a killed run starts again. Both go through
this module, so "the whole training state" means one thing:

- the model's variables: the weights, and the states of the layers' random
  seed generators (which `model.save_weights` leaves out: dropout after a
  restore draws the masks it would have drawn);
- the optimizer's variables: step count, learning rate, slots, loss scale,
  and the averages that our callbacks attach to it (but not the scratch
  state of a measurement, such as `UpdateRatioLogger`'s on JAX, when it is
  written to disk).

A backup file (format 1) is a NumPy `.npz` archive named
`epoch-<6 digits>.backup.npz`: a `__meta__` member holding JSON
`{"format": 1, "epoch": ..., "variables": [[path, shape], ...],
"state": ...}`, where `state` is `callback_state.encode`'s text of
`{"callbacks": {name: state}, "variables": [values]}`, and one member per
array of that state (`a0`, `a1`, ...). The zip members carry CRC-32
checksums, so a damaged file is detected when it is read.
"""

import json
import os
import random
import re

import keras
import numpy as np

from keras_trainopt._internal import atomic
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import optimizers

FORMAT = 1
_BACKUP_FILE = re.compile(r"^epoch-(\d+)\.backup\.npz$")


# -- the variables -------------------------------------------------------------


def variables(model, *, scratch=False):
    """Every variable a training step reads or writes, each once.

    The model's (weights, then the seed generators' states), then the
    optimizer's.

    Args:
        model: a Keras model (its optimizer may be `None`).
        scratch: include the optimizer's scratch state (`backed_up=False`
            in `optimizers.add_state_variable`): a restart does not need it,
            but a state put back in the same process should hold it too.
    """
    optimizer = getattr(model, "optimizer", None)  # None: not compiled
    if optimizer is None:
        extra = []
    elif scratch:
        extra = optimizer.variables
    else:
        extra = optimizers.backed_up_variables(optimizer)
    found, seen = [], set()
    for variable in list(model.variables) + list(extra):
        if id(variable) not in seen:
            seen.add(id(variable))
            found.append(variable)
    return found


def values_of(variables):
    """The values of `variables`, as NumPy arrays that own their memory."""
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


def assign(variables, values):
    """Loads `values` into `variables` after checking that all of them fit.

    Nothing is assigned unless the count and every shape match, so a
    backup of another model leaves this one as it was.

    Raises:
        ValueError: the counts or a shape differ (naming the variable).
    """
    if len(values) != len(variables):
        raise ValueError(
            f"it holds {len(values)} variables, this model and optimizer have "
            f"{len(variables)}: another model, optimizer or set of callbacks"
        )
    for variable, value in zip(variables, values):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"it holds shape {value.shape} where {variable.path} has "
                f"shape {tuple(variable.shape)}"
            )
    for variable, value in zip(variables, values):
        variable.assign(np.asarray(value).astype(variable.dtype, copy=False))


# -- in memory: taken and put back in one process --------------------------------


def capture(model):
    """The model's whole training state and the global random state.

    Builds the optimizer first (Keras builds it at the first step), so
    that its slots exist and are captured too. `restore` puts it back.
    """
    optimizers.build_optimizer(model)
    return {
        "values": values_of(variables(model, scratch=True)),
        "learning_rate": optimizers.get_learning_rate(model.optimizer),
        "random": global_random_state(),
    }


def restore(model, captured):
    """Puts back what `capture(model)` took."""
    assign(variables(model, scratch=True), captured["values"])
    optimizers.set_learning_rate(model.optimizer, captured["learning_rate"])
    set_global_random_state(captured["random"])


def global_random_state():
    """Python's, NumPy's and Keras' global random states."""
    generator = _global_seed_generator()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "keras_seed": None if generator is None else np.array(
            keras.ops.convert_to_numpy(generator.state.value)
        ),
    }


def set_global_random_state(state):
    """Restores what `global_random_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    generator = _global_seed_generator()
    if generator is not None and state["keras_seed"] is not None:
        generator.state.assign(state["keras_seed"])


def _global_seed_generator():
    """Keras' global `SeedGenerator` (unseeded `keras.random` calls), if any."""
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("global_seed_generator")


# -- on disk: backup files -------------------------------------------------------


def backup_path(folder, epoch):
    """The backup file of `epoch` completed epochs in `folder`."""
    return os.path.join(folder, f"epoch-{epoch:06d}.backup.npz")


def backup_files(folder):
    """`[(epoch, path)]` of the backups in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _BACKUP_FILE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found, reverse=True)


def write_backup(path, epoch, variables, callbacks):
    """Writes one backup file atomically (see `atomic.write_atomically`).

    Args:
        path: the file, normally `backup_path(folder, epoch)`.
        epoch: the number of completed epochs.
        variables: the variables to save, normally `variables(model)`.
        callbacks: `{name: state}` of the callbacks (see `callback_state`).
    """
    text, arrays = callback_state.encode(
        {"callbacks": callbacks, "variables": values_of(variables)}
    )
    meta = {
        "format": FORMAT,
        "epoch": epoch,
        "variables": [[v.path, list(v.shape)] for v in variables],
        "state": text,
    }

    def write(partial):
        with open(partial, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)

    atomic.write_atomically(path, write)


def read_backup(path):
    """`{"callbacks": {...}, "variables": [...]}` of one backup file.

    Raises:
        Exception: any error of reading a damaged file (`zipfile`'s CRC
            check, a truncated archive, JSON) or `ValueError` for an
            unknown format.
    """
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__meta__"]))
        arrays = {k: archive[k] for k in archive.files if k != "__meta__"}
    if meta.get("format") != FORMAT:
        raise ValueError(f"unknown backup format {meta.get('format')!r}")
    return callback_state.decode(meta["state"], arrays)
