"""One process per run folder: a lock file with its owner's PID and host, released at the end.

The lock is an exclusive ``flock`` on ``RUN_DIR/lsrl.lock``; the file also records the owner (PID, host,
start time) for the message a second process gets. The operating system releases a ``flock`` when its
process dies (also on ``kill -9``), so a lock file of this host whose ``flock`` is free is stale: it is taken
over with a notice. A lock file of another host is never taken over (some network file systems keep
``flock`` local to a host): the message says to remove it once that run is gone. On file systems without
``flock`` the owner's PID is checked instead (same host only).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

#: The lock file's name inside a run folder.
LOCK_FILE = "lsrl.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


#: ``flock`` errors of file systems that do not support it.
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(owner: dict) -> str:
    return f"PID {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {owner.get('started', '?')})"


def _read_owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    Args:
        run_dir: the run folder (created if missing).

    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; return a notice when a stale lock of a dead process was taken over.

        Raises:
            RunFolderBusy: another live process holds it, or a process of another host (the message names its
                PID and host).

        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            previous = _read_owner(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                busy = previous.get("host", host) != host
            except BlockingIOError:
                busy = True
            except OSError as err:
                if err.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                busy = previous.get("host", host) != host or (
                    previous.get("pid") not in (None, os.getpid()) and _alive(int(previous["pid"]))
                )
            if busy:
                os.close(fd)
                remove = "" if previous.get("host", host) == host else ", or remove that file if the run is gone"
                raise RunFolderBusy(
                    f"run folder {self.path.parent} is in use by {_describe(previous)}: "
                    f"wait for that run to end or stop it (its lock: {self.path}{remove})"
                )
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # the previous owner removed the file while we waited: lock the new one
        owner = {
            "pid": os.getpid(),
            "host": host,
            "started": dt.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        os.fsync(fd)
        self._fd = fd
        if previous:
            return f"Took over the stale lock of {self.path.parent}: {_describe(previous)} is no longer running."
        return None

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def lock_owner(run_dir: str | Path) -> dict:
    """The owner recorded in ``run_dir``'s lock file (``pid``, ``host``, ``started``); empty without one."""
    return _read_owner(Path(run_dir) / LOCK_FILE)


def wait_until_released(run_dir: str | Path, timeout: float) -> bool:
    """Wait until no live process holds ``run_dir``'s lock; ``False`` if one still does after ``timeout`` seconds.

    A run that is stopping (writing its last checkpoint) holds its lock until it has written it; a lock holder of
    this host is also waited for until its process has exited (it prints how to resume after releasing the lock).
    """
    deadline = time.monotonic() + timeout
    owner = lock_owner(run_dir)
    while (Path(run_dir) / LOCK_FILE).exists():
        lock = RunLock(run_dir)
        try:
            lock.acquire()
        except RunFolderBusy:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
            continue
        lock.release()
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        while _alive(owner["pid"]) and owner["pid"] != os.getpid():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
    return True
