"""`atomic`: files that are either wholly written or not there.

References: the bytes on disk, `os.getpid()`, `shutil.disk_usage`, and real
processes killed or refused by the kernel (RLIMIT_FSIZE) in mid-write.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys

import pytest

from keras_trainopt._internal import atomic


def write_bytes(data):
    def write(path):
        with open(path, "wb") as f:
            f.write(data)

    return write


def test_the_file_is_replaced_and_nothing_else_is_left(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")
    atomic.write_atomically(target, write_bytes(b"new content"))
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["state.npz"]


def test_the_partial_name_keeps_the_extension_and_the_pid():
    path = os.path.join("some", "dir", "model.weights.h5")
    assert atomic.partial_path(path) == os.path.join(
        "some", "dir", f"model.partial-{os.getpid()}.weights.h5"
    )


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_in_the_write_leaves_the_old_file_and_no_partial(
    tmp_path, error
):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")

    def write(path):
        with open(path, "wb") as f:
            f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic.write_atomically(target, write)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.npz"]


def test_an_oserror_names_the_file_and_says_the_old_one_is_unchanged(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")

    def write(path):
        with open(path, "wb") as f:
            f.write(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        atomic.write_atomically(target, write)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target)
    assert f"Could not write {target}: No space left on device" in str(
        raised.value
    )
    assert "previous version of the file, if any, is unchanged" in str(
        raised.value
    )
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.npz"]


# A process that writes argv[1] atomically: 1 MB, in 64 kB pieces, telling
# how far it is. With argv[2] = "limit", the kernel refuses writes beyond
# 100 kB (EFBIG, as a full disk refuses them).
# (It loads atomic.py alone, not the package and TensorFlow: it starts at
# once.)
WRITER = f"""
import importlib.util
import resource
import signal
import sys
spec = importlib.util.spec_from_file_location("atomic", {atomic.__file__!r})
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
""" + """
if sys.argv[2] == "limit":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
def write(path):
    with open(path, "wb") as f:
        for i in range(16):
            f.write(b"n" * 65536)
            f.flush()
            print("piece", i, flush=True)
            if sys.argv[2] == "slow" and i == 3:
                sys.stdin.readline()  # killed while waiting here
try:
    atomic.write_atomically(sys.argv[1], write)
except OSError as error:
    print("error:", error, flush=True)
"""


def test_a_process_killed_in_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), "slow"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    for line in writer.stdout:
        if line.startswith("piece 3"):
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert target.read_bytes() == b"old"
    partial = tmp_path / f"state.partial-{writer.pid}.npz"
    assert partial.stat().st_size == 4 * 65536  # torn, and only there
    (tmp_path / "notes.txt").write_text("the user's")
    atomic.remove_partial_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "state.npz"]


def test_a_write_refused_by_the_kernel_is_a_clear_error(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(target), "limit"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"error: [Errno {errno.EFBIG}] Could not write "
                           f"{target}: File too large")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.npz"]


def test_remove_partial_files_of_a_missing_folder_does_nothing(tmp_path):
    atomic.remove_partial_files(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_free_space_is_checked_against_the_disk(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    path = tmp_path / "big.h5"
    atomic.check_free_space(path, 1000)  # fits
    with pytest.raises(OSError) as raised:
        atomic.check_free_space(path, free)  # plus the margin: does not
    assert raised.value.errno == errno.ENOSPC
    assert f"Not enough disk space to write {path}" in str(raised.value)
    assert f"{free} free" in str(raised.value)
