"""One process per run folder: a lock file with its owner's PID and host, released at the end.

The lock is an exclusive ``flock`` on ``RUN_DIR/lsrl.lock``; the file also records the owner (PID, host,
start time) for the message a second process gets. The operating system releases a ``flock`` when its
process dies (also on ``kill -9``), so a lock file whose ``flock`` is free is stale: it is taken over with a
notice.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path

#: The lock file's name inside a run folder.
LOCK_FILE = "lsrl.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


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

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> str | None:
        """Take the lock; return a notice when a stale lock of a dead process was taken over.

        Raises:
            RunFolderBusy: another live process holds it (the message names its PID and host).

        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunFolderBusy(
                    f"run folder {self.path.parent} is in use by {_describe(_read_owner(self.path))}: "
                    f"wait for that run to end or stop it (its lock: {self.path})"
                ) from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)  # the previous owner removed the file while we waited: lock the new one
        previous = _read_owner(self.path)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
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
