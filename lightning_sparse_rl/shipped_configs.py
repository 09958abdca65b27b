"""The configs and sweep files that ship with the package, found by name: ``lsrl fit --config sac``.

The repository's top-level ``configs/`` is their one source. The wheel carries that folder as
``lightning_sparse_rl/configs/`` (``setup.py`` maps it into the package); in a clone or an editable install it is
read where it is. Run configs are ``configs/NAME.yaml``, sweep files ``configs/sweeps/NAME.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["config", "sweep"]

#: The shipped configs inside an installed wheel.
_PACKAGED = Path(__file__).resolve().parent / "configs"
#: The shipped configs in a clone (and an editable install): the repository's ``configs/``.
_REPOSITORY = Path(__file__).resolve().parent.parent / "configs"


def configs_folder() -> Path:
    """The folder of the shipped run configs (its ``sweeps/`` holds the sweep files)."""
    return _PACKAGED if _PACKAGED.is_dir() else _REPOSITORY


def shipped(kind: Kind) -> dict[str, Path]:
    """The shipped run configs (``kind="config"``) or sweep files (``"sweep"``): name → file, sorted by name."""
    folder = configs_folder() / "sweeps" if kind == "sweep" else configs_folder()
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def description(path: Path) -> str:
    """The first comment line of a config file (its summary), without the ``#``; empty when it has none."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            return ""
    return ""


def find(given: str, kind: Kind) -> Path | None:
    """The shipped file that ``given`` names (``sac`` or ``sac.yaml``), unless ``given`` is a file that exists.

    Returns ``None`` for an existing file (it is used as given) and for a name that is not shipped (the caller
    then reports the missing file as before).
    """
    if Path(given).exists() or "/" in given:
        return None
    return shipped(kind).get(given.removesuffix(".yaml"))
