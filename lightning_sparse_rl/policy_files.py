"""Reading an agent from a file: an exported policy (``lsrl export``) or a checkpoint of ``lsrl fit``."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

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


def _format_1_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A format-1 policy state (``nn.Linear`` layers ``(out, in)``, SAC's two heads) in format 2's layout."""
    converted: dict[str, Tensor] = {}
    heads: dict[str, Tensor] = {}
    for key, value in state.items():
        layer = re.fullmatch(r"actor\.(trunk|net)\.(\d+)\.(weight|bias)", key)
        head = re.fullmatch(r"actor\.(mean|log_std)\.(weight|bias)", key)
        if layer:
            network, index, kind = layer.groups()
            converted[f"actor.{network}.layers.{int(index) // 2}.{kind}"] = (value.T if kind == "weight" else value)[
                None
            ]
        elif head:
            heads[".".join(head.groups())] = value
        elif key == "input_features.permutation":
            converted[key] = value[None]
        elif key == "input_features.noise._extra_state":
            converted[key] = {"streams": [{"seed": value["seed"], "device": value["device"], "state": value["state"]}]}
        else:
            converted[key] = value
    if heads:  # SAC: [mean, log-std] as one head
        converted["actor.head.weight"] = torch.cat([heads["mean.weight"].T, heads["log_std.weight"].T], dim=1)[None]
        converted["actor.head.bias"] = torch.cat([heads["mean.bias"], heads["log_std.bias"]])[None]
    return converted


def best_agent_seed(checkpoint: dict[str, Any]) -> int | None:
    """The seed of the agent with the best return at the last evaluation recorded in ``checkpoint`` (or ``None``)."""
    results = [v for k, v in checkpoint.get("callbacks", {}).items() if k.startswith("EvaluationResults")]
    rows = results[0]["evaluations"] if results else []
    if not rows:
        return None
    last = max(row[0] for row in rows)
    return int(max((row for row in rows if row[0] == last), key=lambda row: row[2])[1])


def load_policy(path: str | Path, seed: int | None = None) -> Policy:
    """A :class:`Policy` from an exported policy file or from a Lightning checkpoint of ``SAC``/``TD3``.

    From a checkpoint of a population, ``seed`` picks the agent; ``None``: the agent with the best return at
    the last evaluation (the first agent when the checkpoint recorded none). Policy files of format 1
    (before populations) are converted.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is neither an exported policy nor a checkpoint of ``SAC``/``TD3``, a policy file
            of an unknown format version, or ``seed`` is not an agent of the file.

    """
    path = Path(path)
    data = _read_policy_file(path)
    if CHECKPOINT_KEYS <= data.keys():  # a Lightning checkpoint
        hparams = data["hyper_parameters"]
        if "env_spec" not in hparams:  # a plain Lightning checkpoint, not one of lsrl fit
            raise _not_a_policy(path)
        name = str(hparams.get("_class_path", "")).rsplit(".", 1)[-1] or ("TD3" if "policy_freq" in hparams else "SAC")
        if name not in ALGORITHMS:
            raise ValueError(f"{path}: a checkpoint of {name}, not of {sorted(ALGORITHMS)}")
        module = ALGORITHMS[name].load_from_checkpoint(path, map_location="cpu")
        return Policy.from_algorithm(module, seed if seed is not None else best_agent_seed(data)).eval()
    if data["format"] not in (1, POLICY_FORMAT):
        raise ValueError(
            f"{path}: policy file format {data['format']!r}, this version reads formats 1 and {POLICY_FORMAT}"
        )
    if not POLICY_KEYS <= data.keys():
        raise _not_a_policy(path)
    if seed is not None and seed != data.get("seed"):
        raise ValueError(f"{path} holds one agent (seed {data.get('seed')}), not seed {seed}")
    policy = Policy(data["algorithm"], data["env_spec"], **data["architecture"], seed=data.get("seed"))
    state = data["state_dict"] if data["format"] == POLICY_FORMAT else _format_1_state(data["state_dict"])
    policy.load_state_dict(state)
    return policy.eval()
