"""A trained agent's acting part as a small file: input features (noise, permutation) and the actor.

``export_policy(module, path, seed)`` writes one agent of a trained ``SAC``/``TD3`` (population); ``load_policy(path)``
reads it back, or builds it from a Lightning checkpoint. Masks are baked into the weights (inactive weights
are exact zeros), so the file needs no sparsity machinery and has no critics, targets, optimizer
state or replay buffer.
"""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from lightning_sparse_rl.data.envs import EnvSpec
from lightning_sparse_rl.data.noise_features import InputFeatures
from lightning_sparse_rl.floating_point import count_nonzero_entries
from lightning_sparse_rl.networks import DeterministicActor, SquashedGaussianActor
from lightning_sparse_rl.persistence.checkpoint_io import torch_bytes
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.sparse import linear_layers

if TYPE_CHECKING:
    from lightning_sparse_rl.algorithms import OffPolicyAlgorithm

#: Version of the exported policy file layout (2: member-batched layers; format 1 files are converted on load).
POLICY_FORMAT = 2
#: The actor of each algorithm a policy can come from.
ACTORS: dict[str, type[nn.Module]] = {"SAC": SquashedGaussianActor, "TD3": DeterministicActor}


class Policy(nn.Module):
    """Deterministic acting with one trained agent's actor: ``act(obs (B, d)) → actions (B, action_dim)``.

    Args:
        algorithm: ``SAC`` (squashed Gaussian actor; acts with ``tanh(mean)``) or ``TD3``.
        env_spec: the environment the agent was trained on (noise features included).
        hidden_layers: hidden layers of the actor.
        hidden_width: units per hidden layer.
        activation: hidden activation name.
        seed: the agent's seed (of its population, for the record).

    """

    def __init__(
        self,
        algorithm: str,
        env_spec: EnvSpec,
        hidden_layers: int,
        hidden_width: int,
        activation: str,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if algorithm not in ACTORS:
            raise ValueError(f"algorithm={algorithm!r} must be one of {sorted(ACTORS)}")
        self.algorithm = algorithm
        self.env_spec = env_spec
        self.architecture = {"hidden_layers": hidden_layers, "hidden_width": hidden_width, "activation": activation}
        self.seed = seed
        self.input_features = InputFeatures(env_spec.observation_dim, env_spec.real_dim, env_spec.network_noise, [0])
        self.actor = ACTORS[algorithm](
            1,
            self.input_features.input_dim,
            env_spec.action_dim,
            hidden_layers,
            hidden_width,
            activation,
            env_spec.action_low,
            env_spec.action_high,
        )

    @classmethod
    def from_algorithm(cls, module: OffPolicyAlgorithm, seed: int | None = None) -> Policy:  # a trained SAC or TD3
        """The acting part of one agent of a trained ``SAC``/``TD3`` (masks baked into the weights).

        Raises:
            ValueError: ``seed`` is not one of the population's (``None``: the first agent).

        """
        seeds = list(module.seeds)
        seed = seeds[0] if seed is None else seed
        if seed not in seeds:
            raise ValueError(f"seed={seed} is not an agent of this run: its seeds are {seeds}")
        agent = seeds.index(seed)
        hp = module.hparams
        name = type(module).__name__
        policy = cls(name, module.env_spec, hp.hidden_layers, hp.hidden_width, hp.activation, seed)
        # Read every entry through attribute access: a masked weight reads as weight ⊙ mask. Layers hold one
        # member per agent; the action scaling is shared.
        state = {}
        for key in policy.actor.state_dict():
            value = attrgetter(key)(module.actor).detach().cpu()
            state[key] = value[agent : agent + 1] if key.endswith((".weight", ".bias")) else value
        policy.actor.load_state_dict(state)
        features = module.input_features
        policy.input_features.set_permutation(0, features.permutation[agent].cpu())
        if features.noise is not None:
            policy.input_features.noise.streams[0].load_state_dict(features.noise.streams[agent].state_dict())
        return policy

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Deterministic actions ``(B, action_dim)`` in env units for stored-format observations ``(B, d)``."""
        return self.actor.deterministic(self.input_features(obs.unsqueeze(0)))[0]

    def act_numpy(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action ``(action_dim,)`` for one observation ``(d,)`` as the env returns it."""
        return self.act(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()

    def connections(self) -> tuple[int, int]:
        """Non-zero weights and all weights of the actor."""
        weights = [layer.weight for layer in linear_layers(self.actor)]
        return sum(count_nonzero_entries(w) for w in weights), sum(w.numel() for w in weights)

    def save(self, path: str | Path) -> None:
        """Write the policy file (loadable with ``weights_only=True``), atomically, as checkpoints are.

        Raises:
            OSError: as :func:`~lightning_sparse_rl.persistence.run_files.atomic_write_bytes` reports it (a full
                disk, a read-only or forbidden folder); a file already at ``path`` is then intact.

        """
        payload: dict[str, Any] = {
            "format": POLICY_FORMAT,
            "algorithm": self.algorithm,
            "env_spec": self.env_spec,
            "architecture": self.architecture,
            "seed": self.seed,
            "state_dict": self.state_dict(),
        }
        atomic_write_bytes(Path(path), torch_bytes(payload))


def export_policy(module: OffPolicyAlgorithm, path: str | Path, seed: int | None = None) -> Policy:
    """Write the acting part of ``module``'s agent ``seed`` (``None``: the first) to ``path`` and return it."""
    policy = Policy.from_algorithm(module, seed)
    policy.save(path)
    return policy
