"""A trained agent's acting part as a small file: input features (noise, permutation) and the actor.

``export_policy(module, path)`` writes it from a trained ``SAC``/``TD3``; ``load_policy(path)`` reads
it back, or builds it from a Lightning checkpoint. Masks are baked into the weights (inactive weights
are exact zeros), so the file needs no sparsity machinery and has no critics, targets, optimizer
state or replay buffer.
"""

from __future__ import annotations

import pickle
import zipfile
from operator import attrgetter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse_rl.algorithms import SAC, TD3, OffPolicyAlgorithm
from lightning_sparse_rl.data.envs import EnvSpec
from lightning_sparse_rl.data.noise_features import InputFeatures
from lightning_sparse_rl.networks import DeterministicActor, SquashedGaussianActor
from lightning_sparse_rl.persistence.checkpoint_io import verify_checkpoint

#: Version of the exported policy file layout.
POLICY_FORMAT = 1
ALGORITHMS: dict[str, type[OffPolicyAlgorithm]] = {"SAC": SAC, "TD3": TD3}
#: Entries of an exported policy file and of a Lightning checkpoint that :func:`load_policy` reads.
POLICY_KEYS = frozenset({"format", "algorithm", "env_spec", "architecture", "state_dict"})
CHECKPOINT_KEYS = frozenset({"state_dict", "hyper_parameters"})


class Policy(nn.Module):
    """Deterministic acting with a trained actor: ``act(obs (B, d)) → actions (B, action_dim)``.

    Args:
        algorithm: ``SAC`` (squashed Gaussian actor; acts with ``tanh(mean)``) or ``TD3``.
        env_spec: the environment the agent was trained on (noise features included).
        hidden_layers: hidden layers of the actor.
        hidden_width: units per hidden layer.
        activation: hidden activation name.

    """

    def __init__(
        self, algorithm: str, env_spec: EnvSpec, hidden_layers: int, hidden_width: int, activation: str
    ) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r} must be one of {sorted(ALGORITHMS)}")
        self.algorithm = algorithm
        self.env_spec = env_spec
        self.architecture = {"hidden_layers": hidden_layers, "hidden_width": hidden_width, "activation": activation}
        self.input_features = InputFeatures(env_spec.observation_dim, env_spec.real_dim, env_spec.network_noise, 0)
        actor = SquashedGaussianActor if algorithm == "SAC" else DeterministicActor
        self.actor = actor(
            self.input_features.input_dim,
            env_spec.action_dim,
            hidden_layers,
            hidden_width,
            activation,
            env_spec.action_low,
            env_spec.action_high,
        )

    @classmethod
    def from_algorithm(cls, module: OffPolicyAlgorithm) -> Policy:
        """The acting part of a trained ``SAC``/``TD3`` (masks baked into the weights)."""
        hp = module.hparams
        policy = cls(type(module).__name__, module.env_spec, hp.hidden_layers, hp.hidden_width, hp.activation)
        # Read every entry through attribute access: a masked weight reads as weight ⊙ mask.
        state = {key: attrgetter(key)(module.actor).detach().cpu() for key in policy.actor.state_dict()}
        policy.actor.load_state_dict(state)
        policy.input_features.load_state_dict(module.input_features.state_dict())
        return policy

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic actions ``(B, action_dim)`` in env units for stored-format observations ``(B, d)``."""
        return self.actor.deterministic(self.input_features(obs))

    def connections(self) -> tuple[int, int]:
        """Non-zero weights and all weights of the actor."""
        weights = [m.weight for m in self.actor.modules() if isinstance(m, nn.Linear)]
        return sum(int(w.count_nonzero()) for w in weights), sum(w.numel() for w in weights)

    def save(self, path: str | Path) -> None:
        """Write the policy file (loadable with ``weights_only=True``)."""
        payload: dict[str, Any] = {
            "format": POLICY_FORMAT,
            "algorithm": self.algorithm,
            "env_spec": self.env_spec,
            "architecture": self.architecture,
            "state_dict": self.state_dict(),
        }
        torch.save(payload, path)


def export_policy(module: OffPolicyAlgorithm, path: str | Path) -> Policy:
    """Write ``module``'s acting part to ``path`` (see :class:`Policy`) and return it."""
    policy = Policy.from_algorithm(module)
    policy.save(path)
    return policy


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
