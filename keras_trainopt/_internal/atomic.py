"""Files that are either wholly written or not there: never torn.

Every file a callback writes for a later run to read (backups, snapshots)
goes through `write_atomically`: the content is written to a temporary file
in the same folder, flushed and fsynced, then renamed over the target, and
the folder is fsynced so that the rename itself survives a power cut. A
process killed at any instant leaves either the old file or the new one,
plus at worst a temporary file that `remove_partial_files` sweeps away.

A failed write (full disk, no permission, file too large) raises an
`OSError` that names the file and says that the previous one is unchanged.
"""

import contextlib
import errno
import os
import shutil

PARTIAL_MARK = ".partial-"


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def partial_path(path):
    """Where `path` is written before the rename.

    The name keeps the file's extension (`x.weights.h5` gives
    `x.partial-<pid>.weights.h5`) because Keras checks it when saving.
    """
    folder, name = os.path.split(path)
    stem, dot, rest = name.partition(".")
    return os.path.join(folder, f"{stem}{PARTIAL_MARK}{os.getpid()}{dot}{rest}")


def write_atomically(path, write):
    """Calls `write(temporary_path)`, then moves the result to `path`.

    Args:
        path: the file to (re)place.
        write: a function that writes the whole content to the path it is
            given (e.g. `model.save_weights`, `np.savez`).

    Raises:
        OSError: naming `path`, when the content cannot be written; any
            previous `path` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    partial = partial_path(path)
    try:
        write(partial)
        with open(partial, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(error, OSError):
            raise OSError(
                error.errno,
                f"Could not write {path}: {error.strerror or error}. "
                "The previous version of the file, if any, is unchanged",
                path,
            ) from error
        raise
    _fsync_folder(folder)


def check_free_space(path, size):
    """Raises `OSError(ENOSPC)` naming `path` unless `size` bytes fit.

    For writers that cannot fail cleanly: h5py (hence `save_weights`) can
    crash the process when the disk fills up in the middle of a write. A
    margin of 10% plus 1 MB covers the file format's own overhead.
    """
    folder = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(folder).free
    needed = int(size * 1.1) + (1 << 20)
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"Not enough disk space to write {path}: about {needed} bytes "
            f"needed, {free} free. The files written before are unchanged",
            path,
        )


def remove_partial_files(folder):
    """Deletes what writes killed before their rename left in `folder`."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if PARTIAL_MARK in name:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))

