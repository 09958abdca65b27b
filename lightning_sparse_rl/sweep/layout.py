"""The layout of a sweep folder (written by ``lsrl sweep``, read by ``lsrl sweep --resume`` and ``lsrl report``).

::

    SWEEP_DIR/sweep.yaml                 a copy of the sweep file
    SWEEP_DIR/trials.json                the trials as checked, with the command, commit, machine and date
    SWEEP_DIR/trials/NAME/trial.yaml     a trial's base config (callback settings applied, logs in its folder)
    SWEEP_DIR/trials/NAME/fit.log        the output of its lsrl fit processes
    SWEEP_DIR/trials/NAME/version_0/     its lsrl fit run folder
    SWEEP_DIR/ray/tune/                  Ray Tune's experiment state
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: The sweep's trials, resources and retries, as ``lsrl sweep`` expanded and checked them.
TRIALS_FILE = "trials.json"
#: A copy of the sweep file.
SWEEP_COPY = "sweep.yaml"
#: A trial's config file inside its trial folder.
TRIAL_CONFIG = "trial.yaml"
#: The output of a trial's ``lsrl fit`` processes inside its trial folder.
FIT_LOG = "fit.log"
#: A trial's run folder inside its trial folder (its CSV logger's ``version_0``).
RUN_FOLDER = "version_0"


def is_sweep_folder(path: str | Path) -> bool:
    """Whether ``path`` is a sweep folder of ``lsrl sweep``."""
    return (Path(path) / TRIALS_FILE).is_file()


def trial_folder(sweep_dir: str | Path, name: str) -> Path:
    """The folder of trial ``name``."""
    return Path(sweep_dir) / "trials" / name


def trial_run_folder(sweep_dir: str | Path, name: str) -> Path:
    """The ``lsrl fit`` run folder of trial ``name``."""
    return trial_folder(sweep_dir, name) / RUN_FOLDER


#: The longest trial folder name (file systems allow 255 bytes; Ray adds to it in its own folders).
MAX_NAME_CHARS = 120


def file_name_part(text: str) -> str:
    """``text`` with every character that is not safe in a file name replaced by ``_``, at most a name long.

    A longer text than :data:`MAX_NAME_CHARS` is cut, and ends in the first 10 hex digits of its SHA-1 (names stay
    distinct).
    """
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if len(name) <= MAX_NAME_CHARS:
        return name
    return f"{name[: MAX_NAME_CHARS - 11]}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
