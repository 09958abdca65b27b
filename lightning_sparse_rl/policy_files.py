"""Reading an agent from a file: an exported policy (``lsrl export``) or a checkpoint of ``lsrl fit``."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lightning_sparse_rl.algorithms import SAC, TD3, OffPolicyAlgorithm
from lightning_sparse_rl.persistence.checkpoint_io import verify_checkpoint
from lightning_sparse_rl.policy import POLICY_FORMAT, Policy

ALGORITHMS: dict[str, type[OffPolicyAlgorithm]] = {"SAC": SAC, "TD3": TD3}
#: Entries of an exported policy file and of a Lightning checkpoint that :func:`load_policy` reads.
POLICY_KEYS = frozenset({"format", "algorithm", "env_spec", "architecture", "state_dict"})
CHECKPOINT_KEYS = frozenset({"state_dict", "hyper_parameters"})


def _not_a_policy(path: Path) -> ValueError:
    return ValueError(f"{path} is neither an exported policy (.pt of lsrl export) nor a checkpoint (.ckpt of lsrl fit)")


def _read_policy_file(path: Path) -> dict[str, Any]:
    """The dictionary saved in ``path``: an exported policy or a Lightning checkpoint (not yet checked which).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` holds something else: text, other bytes, or another object saved by torch.
        CheckpointDamaged: a checkpoint whose bytes differ from the checksum recorded when it was written.

    """
    if not path.is_file():
        raise FileNotFoundError(f"no policy or checkpoint file at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise _not_a_policy(path)
    verify_checkpoint(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:  # objects weights_only refuses; a zip of other files
        raise _not_a_policy(path) from err
    if not isinstance(data, dict) or not (CHECKPOINT_KEYS <= data.keys() or "format" in data):
        raise _not_a_policy(path)
    return data


def load_policy(path: str | Path) -> Policy:
    """A :class:`Policy` from an exported policy file or from a Lightning checkpoint of ``SAC``/``TD3``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is neither an exported policy nor a checkpoint of ``SAC``/``TD3``, or a policy
            file of another format version.

    """
    path = Path(path)
    data = _read_policy_file(path)
    if CHECKPOINT_KEYS <= data.keys():  # a Lightning checkpoint
        hparams = data["hyper_parameters"]
        name = str(hparams.get("_class_path", "")).rsplit(".", 1)[-1] or ("TD3" if "policy_freq" in hparams else "SAC")
        if name not in ALGORITHMS:
            raise ValueError(f"{path}: a checkpoint of {name}, not of {sorted(ALGORITHMS)}")
        module = ALGORITHMS[name].load_from_checkpoint(path, map_location="cpu")
        return Policy.from_algorithm(module).eval()
    if data["format"] != POLICY_FORMAT:
        raise ValueError(f"{path}: policy file format {data['format']!r}, this version reads format {POLICY_FORMAT}")
    if not POLICY_KEYS <= data.keys():
        raise _not_a_policy(path)
    policy = Policy(data["algorithm"], data["env_spec"], **data["architecture"])
    policy.load_state_dict(data["state_dict"])
    return policy.eval()
