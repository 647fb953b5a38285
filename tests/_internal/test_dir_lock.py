"""`dir_lock`: one training run per folder, with real files and processes.

References: the process ids of real child processes, the lock file on disk,
and `fcntl.flock` taken by another process.
"""

import os
import signal
import subprocess
import sys

import pytest

from keras_trainopt._internal import dir_lock

pytestmark = pytest.mark.skipif(dir_lock.fcntl is None,
                                reason="no fcntl: folders are not locked")

# The child processes load dir_lock.py alone, not the package (and
# TensorFlow with it), so that they start at once.
LOAD = f"""
import importlib.util
import sys
spec = importlib.util.spec_from_file_location("dir_lock", {dir_lock.__file__!r})
dir_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dir_lock)
"""

# Claims the folder in argv[1], says so, then waits for a line on stdin:
# "release" gives it back and exits, end of input just exits.
HOLDER = LOAD + """
key = dir_lock.claim(sys.argv[1], "`logdir`")
print("holding", flush=True)
if sys.stdin.readline().strip() == "release":
    dir_lock.release(key)
    print("released", flush=True)
"""

# Tries to claim argv[1]; prints "claimed" or the error.
CLAIMER = LOAD + """
try:
    dir_lock.claim(sys.argv[1], "`logdir`")
except dir_lock.FolderInUseError as error:
    print("refused:", error)
else:
    print("claimed")
"""


def start_holder(folder):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def try_claim_elsewhere(folder):
    """What a claim of `folder` by another, new process gives."""
    result = subprocess.run(
        [sys.executable, "-c", CLAIMER, str(folder)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def lock_file(folder):
    return os.path.join(folder, dir_lock.LOCK_NAME)


def test_a_folder_held_by_a_live_process_is_refused_naming_it(tmp_path):
    folder = tmp_path / "run"
    holder = start_holder(folder)
    try:
        with pytest.raises(dir_lock.FolderInUseError) as raised:
            dir_lock.claim(folder, "`logdir`")
        message = str(raised.value)
        assert f"`logdir` {folder} is in use by another training run" in message
        assert f"pid {holder.pid} on " in message  # the holder, by its pid
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_not_stale(tmp_path):
    folder = tmp_path / "run"
    holder = start_holder(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # SIGKILL: the holder never released, its lock file is still there...
    with open(lock_file(folder)) as f:
        assert f.read().startswith(f"pid {holder.pid} on ")
    # ...but the lock went with the process
    key = dir_lock.claim(folder, "`logdir`")
    try:
        with open(lock_file(folder)) as f:
            assert f.read().startswith(f"pid {os.getpid()} on ")
    finally:
        dir_lock.release(key)


def test_a_folder_released_by_its_holder_can_be_claimed(tmp_path):
    folder = tmp_path / "run"
    holder = start_holder(folder)
    holder.stdin.write("release\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    assert not os.path.exists(lock_file(folder))  # deleted on release
    key = dir_lock.claim(folder, "`logdir`")
    dir_lock.release(key)
    holder.stdin.close()
    holder.wait(timeout=60)


def test_claims_in_one_process_are_counted(tmp_path):
    folder = tmp_path / "run"
    first = dir_lock.claim(folder, "`logdir`")
    second = dir_lock.claim(folder, "`backup_dir`")  # same process: shared
    assert first == second == os.path.realpath(folder)
    dir_lock.release(first)
    # one claim left: still locked for other processes
    assert os.path.exists(lock_file(folder))
    assert try_claim_elsewhere(folder).startswith("refused:")
    dir_lock.release(second)
    assert not os.path.exists(lock_file(folder))
    assert try_claim_elsewhere(folder) == "claimed"


def test_a_process_holding_the_lock_keeps_others_out(tmp_path):
    folder = tmp_path / "run"
    key = dir_lock.claim(folder, "`logdir`")
    try:
        answer = try_claim_elsewhere(folder)
        assert answer.startswith(f"refused: `logdir` {folder} is in use")
        assert f"pid {os.getpid()} on " in answer
    finally:
        dir_lock.release(key)


def test_claim_creates_the_folder_and_names_one_it_cannot_create(tmp_path):
    folder = tmp_path / "a" / "b"
    key = dir_lock.claim(folder, "`logdir`")
    assert os.path.isdir(folder)
    dir_lock.release(key)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=rf"Cannot create `logdir` {blocker}"):
        dir_lock.claim(blocker / "run", "`logdir`")


def test_releasing_nothing_or_twice_is_harmless(tmp_path):
    dir_lock.release(None)
    key = dir_lock.claim(tmp_path, "`logdir`")
    dir_lock.release(key)
    dir_lock.release(key)
    assert try_claim_elsewhere(tmp_path) == "claimed"
