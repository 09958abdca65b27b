"""How ``lsrl`` reports what went wrong: user errors as one line ``error: ...`` with status 2, bugs with a traceback."""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from lightning.fabric.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from lightning_sparse_rl.persistence.checkpoint_io import CheckpointDamaged
from lightning_sparse_rl.persistence.resume import RunFinished
from lightning_sparse_rl.persistence.run_lock import RunFolderBusy
from lightning_sparse_rl.stop_request import StopRequested
from lightning_sparse_rl.validation import UserInputError

#: Exceptions that are the user's input, not a bug: ``lsrl`` prints them as one line and exits with status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    argparse.ArgumentError,
    gym.error.Error,
    FileNotFoundError,
    CheckpointDamaged,
    RunFolderBusy,
    MisconfigurationException,
)
#: The user errors that can also arise once training has started; any other exception there is a bug (traceback).
FIT_USER_ERRORS: tuple[type[BaseException], ...] = (
    UserInputError,
    FileNotFoundError,
    CheckpointDamaged,
    RunFolderBusy,
    MisconfigurationException,
)
#: ``OSError`` numbers that are the machine's state or a path the user gave, not a bug: a full disk or quota, no
#: permission (also an immutable file, ``chattr +i``), read-only, a folder where a file goes or the reverse, a name
#: too long.
ENVIRONMENT_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.ENAMETOOLONG,
)


class ToolParser(argparse.ArgumentParser):
    """``argparse`` whose errors are exceptions (``lsrl`` prints them as one line), not usage text and an exit."""

    @override
    def error(self, message: str) -> Any:
        """Raise ``argparse.ArgumentError`` with ``message``."""
        raise argparse.ArgumentError(None, f"{self.prog}: {message}")


def _jsonargparse_reason(error: BaseException) -> str | None:
    """For jsonargparse's report of a value that no accepted type took: its key and innermost reason."""
    if not (isinstance(error, argparse.ArgumentError) or str(error).startswith("Does not validate")):
        return None
    keys, reason = [], str(error)
    cause: BaseException | None = error
    while cause is not None:
        message = str(cause)
        key = re.match(r'Parser key "([^"]+)":\s*', message)
        if key and key[1] not in keys:
            keys.append(key[1])
            message = message[key.end() :]
        if isinstance(cause, (ValueError, argparse.ArgumentError)) and not message.startswith("Does not validate"):
            reason = message
        cause = cause.__cause__
    return f"{'.'.join(keys)}: {reason}" if keys else reason


def one_line(error: BaseException) -> str:
    """An error as one line: the OS's reason and file, jsonargparse's key and reason, or the message."""
    if isinstance(error, OSError) and error.strerror and error.errno not in (None, errno.ENOENT):
        return error.strerror if error.filename is None else f"{error.strerror}: {error.filename}"
    return " ".join((_jsonargparse_reason(error) or str(error)).split()) or type(error).__name__


def _stop_message(stop: StopRequested) -> str:
    if stop.checkpoint is None:
        return f"Stopped by {stop.signal.name} during {stop.phase}; no checkpoint was written."
    checkpoint = Path(stop.checkpoint)
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    config = run_dir / "config.yaml"
    if config.exists():
        resume = f"lsrl fit --config {config} --ckpt_path last"
    else:
        resume = f"lsrl fit ... --ckpt_path {checkpoint}"
    return f"Stopped by {stop.signal.name} during {stop.phase}; wrote {checkpoint}. Resume with: {resume}"


def run_reporting_errors(command: Callable[[list[str]], None], argv: Sequence[str]) -> None:
    """Run ``command(argv)``; a user error becomes one line ``error: ...`` on stderr and exit status 2.

    User errors are invalid values, env ids, config files, checkpoints, a busy run folder, a full disk; once
    training has started only the dedicated types (:data:`FIT_USER_ERRORS`): any other exception there is a
    bug and keeps its traceback. ``--debug`` in ``argv`` (removed before ``command`` sees it) or
    ``LSRL_DEBUG=1`` shows the traceback of user errors too. A honoured stop signal prints how to resume
    (status 0); a resume of a finished run says so (status 0). Ctrl-C before the run's signal handlers are
    installed ends with status 130 (inside Lightning's fit, with Lightning's graceful shutdown and status 1).
    """
    debug = "--debug" in argv or os.environ.get("LSRL_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        command(argv)
    except StopRequested as stop:
        print(_stop_message(stop), flush=True)
    except RunFinished as finished:
        print(finished, flush=True)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except (*USER_ERRORS, OSError) as error:
        if debug or not _is_user_error(error):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)


def _is_user_error(error: BaseException) -> bool:
    """The user's input or the machine's state, as opposed to a bug (which keeps its traceback)."""
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        return True
    if getattr(error, "lsrl_during_fit", False):
        return isinstance(error, FIT_USER_ERRORS)
    return isinstance(error, USER_ERRORS)
