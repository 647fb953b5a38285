"""One training run per folder, checked when training starts.

Two runs that write backups, snapshots or TensorBoard events into the same
folder overwrite each other's files. The first run to claim a folder holds an
advisory lock on `<folder>/.keras_trainopt.lock` (`fcntl.flock`) until its
`fit` ends (then the file is deleted); a second run that claims it fails
at once with an error naming the folder and the run that holds it, before
its first step.

The lock belongs to the process: it disappears with it, so a run killed with
SIGKILL never leaves a stale lock behind, and its resumed run claims the
folder again. Claims within one process are counted (the callbacks of one
`fit` share a folder freely). Where `fcntl` does not exist (Windows) folders
are not locked.
"""

import os
import socket
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".keras_trainopt.lock"

_LOCK = threading.Lock()
_HELD = {}  # real path -> [file descriptor, number of claims]


class FolderInUseError(RuntimeError):
    """Another process is training with the same folder."""


def claim(folder, what):
    """Claims `folder` for this process; returns the key for `release`.

    Args:
        folder: the folder (created if missing).
        what: the argument that named it, for the message (e.g.
            "`backup_dir`").

    Raises:
        FolderInUseError: another live process holds the folder.
        OSError: the folder cannot be created or written (naming it).
    """
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno,
            f"Cannot create {what} {folder}: {error.strerror or error}",
            folder,
        ) from error
    key = os.path.realpath(folder)
    with _LOCK:
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            return key
        path = os.path.join(key, LOCK_NAME)
        fd = _lock(path, folder, what)
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(),
        )
        _HELD[key] = [fd, 1]
        return key


def _lock(path, folder, what):
    """Opens and locks the lock file; returns its descriptor."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OSError(
                error.errno,
                f"Cannot write in {what} {folder}: {error.strerror or error}",
                path,
            ) from error
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read(fd)
            os.close(fd)
            raise FolderInUseError(
                f"{what} {folder} is in use by another training run "
                f"({owner or 'owner unknown'}). Give each run its own "
                "folder, or wait until that run ends."
            ) from None
        # The holder deletes the file when it lets go: if that happened
        # between our open and our lock, we hold a deleted file. Try again.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _read(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        return ""


def release(key):
    """Gives back one claim; the lock goes with the last one."""
    if key is None:
        return
    with _LOCK:
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        fd = held[0]
        try:
            os.remove(os.path.join(key, LOCK_NAME))  # before unlocking
        except OSError:
            pass
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
