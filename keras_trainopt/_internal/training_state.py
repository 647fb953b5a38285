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

A backup file (format 2) is a NumPy `.npz` archive named
`epoch-<6 digits>.backup.npz` when it was taken between epochs (`step` 0)
and `epoch-<6 digits>-step-<9 digits>.backup.npz` when it was taken in the
middle of an epoch, after `step` train steps of it: a `__meta__` member
holding JSON `{"format": 2, "epoch": ..., "step": ..., "updates": ...,
"variables": [[path, shape], ...], "metrics": [[path, shape], ...],
"state": ...}`, where `state` is `callback_state.encode`'s text of
`{"callbacks": {name: state}, "variables": [values], "metrics": [values],
"epoch_callbacks": {name: epoch_state}, "random": random_state}`, and one
member per array of that state (`a0`, `a1`, ...). `metrics` (the metrics'
accumulators) is empty between epochs
(`fit` resets them at each epoch's start). Format 1 (no step, metrics or
random state) is still read. The zip members carry CRC-32 checksums, so a
damaged file is detected when it is read (`DamagedBackupError`).
"""

import json
import os
import random
import re
import zipfile

import keras
import numpy as np

from keras_trainopt._internal import atomic
from keras_trainopt._internal import callback_state
from keras_trainopt._internal import optimizers

FORMAT = 2
_READABLE_FORMATS = (1, 2)
_BACKUP_FILE = re.compile(r"^epoch-(\d+)(?:-step-(\d+))?\.backup\.npz$")


class DamagedBackupError(ValueError):
    """A backup file that cannot be read back: truncated or corrupted."""


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
    for variable, value in zip(variables, values, strict=True):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"it holds shape {value.shape} where {variable.path} has "
                f"shape {tuple(variable.shape)}"
            )
    for variable, value in zip(variables, values, strict=True):
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
    """Python's, NumPy's, Keras' and (PyTorch backend) torch's global states.

    These decide the order of a shuffled epoch: Keras' array data draws
    its permutation from NumPy's global generator on JAX, from torch's on
    PyTorch (`DataLoader`'s `RandomSampler`), and `PyDataset` shuffles with
    Python's `random`.
    """
    generator = _global_seed_generator()
    torch_state = None
    if keras.backend.backend() == "torch":
        import torch

        torch_state = torch.get_rng_state().numpy().copy()
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "keras_seed": None if generator is None else np.array(
            keras.ops.convert_to_numpy(generator.state.value)
        ),
        "torch": torch_state,
    }


def set_global_random_state(state):
    """Restores what `global_random_state` (or `decode_random_state`) gave."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    generator = _global_seed_generator()
    if generator is not None and state["keras_seed"] is not None:
        generator.state.assign(state["keras_seed"])
    if state.get("torch") is not None and keras.backend.backend() == "torch":
        import torch

        torch.set_rng_state(torch.from_numpy(np.asarray(state["torch"])))


def encode_random_state(state):
    """`global_random_state()` as plain values and arrays (for a file)."""
    version, internal, gauss = state["python"]
    name, keys, position, has_gauss, cached = state["numpy"]
    return {
        "python": [version, np.asarray(internal, dtype=np.int64), gauss],
        "numpy": [name, np.asarray(keys), int(position), int(has_gauss),
                  float(cached)],
        "keras_seed": state["keras_seed"],
        "torch": state.get("torch"),
    }


def decode_random_state(encoded):
    """The inverse of `encode_random_state`."""
    version, internal, gauss = encoded["python"]
    name, keys, position, has_gauss, cached = encoded["numpy"]
    return {
        "python": (version, tuple(int(i) for i in internal), gauss),
        "numpy": (name, np.asarray(keys, dtype=np.uint32), position,
                  has_gauss, cached),
        "keras_seed": encoded["keras_seed"],
        "torch": encoded.get("torch"),
    }


def _global_seed_generator():
    """Keras' global `SeedGenerator` (unseeded `keras.random` calls), if any."""
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("global_seed_generator")


# -- on disk: backup files -------------------------------------------------------


def backup_path(folder, epoch, step=0):
    """The backup file of `epoch` completed epochs and `step` steps more."""
    if step:
        return os.path.join(folder, f"epoch-{epoch:06d}-step-{step:09d}.backup.npz")
    return os.path.join(folder, f"epoch-{epoch:06d}.backup.npz")


def backup_files(folder):
    """`[((epoch, step), path)]` of the backups in `folder`, newest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _BACKUP_FILE.match(name)
        if match:
            position = (int(match.group(1)), int(match.group(2) or 0))
            found.append((position, os.path.join(folder, name)))
    return sorted(found, reverse=True)


def write_backup(path, position, variables, callbacks, *, metrics=(),
                 epoch_states=None, random_state=None):
    """Writes one backup file atomically (see `atomic.write_atomically`).

    Args:
        path: the file, normally `backup_path(folder, epoch, step)`.
        position: `{"epoch": completed epochs, "step": train steps done in
            the next epoch, "updates": optimizer updates applied}`.
        variables: the variables to save, normally `variables(model)`.
        callbacks: `{name: state}` of the callbacks (see `callback_state`).
        metrics: the metrics' variables (their accumulators), saved in the
            middle of an epoch.
        epoch_states: `{name: get_epoch_state()}` of the callbacks, saved
            in the middle of an epoch.
        random_state: `global_random_state()` to put back on resuming.
    """
    text, arrays = callback_state.encode(
        {
            "callbacks": callbacks,
            "variables": values_of(variables),
            "metrics": values_of(metrics),
            "epoch_callbacks": epoch_states or {},
            "random": None if random_state is None else encode_random_state(
                random_state
            ),
        }
    )
    meta = {
        "format": FORMAT,
        "epoch": int(position["epoch"]),
        "step": int(position.get("step", 0)),
        "updates": position.get("updates"),
        "variables": [[v.path, list(v.shape)] for v in variables],
        "metrics": [[v.path, list(v.shape)] for v in metrics],
        "state": text,
    }

    def write(partial):
        with open(partial, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)

    atomic.write_atomically(path, write)


def read_backup(path):
    """One backup file's content.

    Returns:
        `{"epoch", "step", "updates", "callbacks", "variables", "metrics",
        "epoch_callbacks", "random"}`; `random` is `None` or a `global_random_state()`.

    Raises:
        DamagedBackupError: the file is truncated, fails its checksums or
            is not a backup archive (the message says which).
        ValueError: a backup of an unknown (newer) format.
    """
    if not zipfile.is_zipfile(path):
        raise DamagedBackupError(
            "damaged: truncated or overwritten (not a complete backup "
            "archive: its zip directory is missing)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            arrays = {k: archive[k] for k in archive.files if k != "__meta__"}
    except zipfile.BadZipFile as error:  # a member fails its CRC-32
        raise DamagedBackupError(f"damaged: bad checksum ({error})") from error
    except (KeyError, ValueError, EOFError, OSError) as error:
        raise DamagedBackupError(
            f"damaged: unreadable content ({type(error).__name__}: {error})"
        ) from error
    if meta.get("format") not in _READABLE_FORMATS:
        raise ValueError(
            f"unknown backup format {meta.get('format')!r} (written by a "
            "newer keras_trainopt?)"
        )
    state = callback_state.decode(meta["state"], arrays)
    random_state = state.get("random")
    return {
        "epoch": meta["epoch"],
        "step": meta.get("step", 0),
        "updates": meta.get("updates"),
        "callbacks": state["callbacks"],
        "variables": state["variables"],
        "metrics": state.get("metrics", []),
        "epoch_callbacks": state.get("epoch_callbacks", {}),
        "random": None if random_state is None else decode_random_state(
            random_state
        ),
    }
