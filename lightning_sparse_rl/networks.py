"""Actor and critic networks for SAC and TD3 (MLPs of ``nn.Linear`` layers, as in the original)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_sparse_rl.sparse import (
    ConnectionLayer,
    SparseNetwork,
    TargetBudget,
    linear_layers,
    trainable_weight,
)

#: Hidden activations by their original ``--activation`` names.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leakyrelu": nn.LeakyReLU,
    "swish": nn.SiLU,
    "selu": nn.SELU,
}

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, out_dim: int, hidden_layers: int, hidden_width: int, activation: str) -> nn.Sequential:
    """``in_dim → hidden_width (× hidden_layers, each followed by the activation) → out_dim``.

    With ``out_dim=0`` the network ends after the last hidden activation (a trunk for heads).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
    if hidden_layers < 1 or hidden_width < 1:
        raise ValueError(f"hidden_layers={hidden_layers} and hidden_width={hidden_width} must both be >= 1")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_width), ACTIVATIONS[activation]()]
        width = hidden_width
    if out_dim > 0:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform (gain 1) weights and zero biases for every ``nn.Linear`` (the original SAC init)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight, gain=1.0)
            nn.init.zeros_(layer.bias)


def as_connection_layers(module: nn.Module) -> tuple[ConnectionLayer, ...]:
    """Each ``nn.Linear`` of ``module`` as its own connection layer (plain MLPs)."""
    return tuple((layer,) for layer in linear_layers(module))


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float, budget: TargetBudget | None = None) -> None:
    """``θ_target ← (1 − τ)·θ_target + τ·θ_source`` for every Linear layer, in place (``θ_source``: the masked weight).

    Unmasked target layers of masked source layers are then kept as sparse as their source
    (:class:`~lightning_sparse_rl.sparse.TargetBudget`; pass the algorithm's, which remembers the layers
    already in sync, or none to check every layer).
    """
    pairs = list(zip(linear_layers(target), linear_layers(source), strict=True))
    budget = budget if budget is not None else TargetBudget()
    checked = budget.layers_to_check(pairs)
    was_zero = [t.weight == 0 for t, _ in checked]
    targets = [trainable_weight(t) for t, _ in pairs] + [t.bias for t, _ in pairs]
    sources = [s.weight for _, s in pairs] + [s.bias for _, s in pairs]
    torch._foreach_lerp_(targets, sources, tau)
    budget.enforce_(checked, was_zero)


class _ActionScaling(nn.Module):
    """Maps ``[-1, 1]`` to the env's action box: ``a = x·scale + bias``."""

    def __init__(self, action_low: tuple[float, ...], action_high: tuple[float, ...]) -> None:
        super().__init__()
        low = torch.tensor(action_low, dtype=torch.float32)
        high = torch.tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)


class SquashedGaussianActor(_ActionScaling):
    """SAC actor: an MLP trunk, a mean head and a log-std head; actions are ``tanh``-squashed.

    Shapes: observations ``(B, obs_dim)`` → actions ``(B, action_dim)`` in env units.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_layers: int,
        hidden_width: int,
        activation: str,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
    ) -> None:
        super().__init__(action_low, action_high)
        self.trunk = mlp(obs_dim, 0, hidden_layers, hidden_width, activation)
        self.mean = nn.Linear(hidden_width, action_dim)
        self.log_std = nn.Linear(hidden_width, action_dim)
        xavier_init_(self)

    def connection_layers(self) -> tuple[ConnectionLayer, ...]:
        """Trunk layers, then the two heads as one output layer ``hidden → 2·action_dim``."""
        return (*as_connection_layers(self.trunk), (self.mean, self.log_std))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the pre-squash Gaussian, each ``(B, action_dim)``."""
        h = self.trunk(obs)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised action ``(B, action_dim)`` and its log-probability ``(B,)``."""
        mean, log_std = self(obs)
        eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        squashed = torch.tanh(u)
        # log N(u; mean, std) with (u - mean) / std = eps, minus the log-det of the tanh + scaling.
        log_prob = -0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI
        log_prob = log_prob - torch.log(self.action_scale * (1.0 - squashed.pow(2)) + 1e-6)
        return squashed * self.action_scale + self.action_bias, log_prob.sum(dim=-1)

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action ``tanh(mean)`` in env units, ``(B, action_dim)``."""
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class DeterministicActor(_ActionScaling):
    """TD3 actor: ``tanh(MLP(obs))`` scaled to the action box; PyTorch's default ``nn.Linear`` init."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_layers: int,
        hidden_width: int,
        activation: str,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
    ) -> None:
        super().__init__(action_low, action_high)
        self.net = mlp(obs_dim, action_dim, hidden_layers, hidden_width, activation)

    def connection_layers(self) -> tuple[ConnectionLayer, ...]:
        """The MLP's layers, input to output."""
        return as_connection_layers(self.net)

    def forward(self, obs: Tensor) -> Tensor:
        """Actions ``(B, action_dim)`` in env units."""
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action (the actor's output, no exploration noise), ``(B, action_dim)``."""
        return self(obs)


class TwinQCritic(nn.Module):
    """Two independent Q networks on ``[obs, action]``: ``(B, obs_dim), (B, action_dim) → 2 × (B,)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_layers: int, hidden_width: int, activation: str) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, 1, hidden_layers, hidden_width, activation)
        self.q2 = mlp(obs_dim + action_dim, 1, hidden_layers, hidden_width, activation)

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q1 and Q2 values, each ``(B,)``."""
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def sparse_networks(self, target: TwinQCritic) -> list[SparseNetwork]:
        """Q1 and Q2 (family ``critic``, dense output) paired with the matching networks of ``target``."""
        return [
            SparseNetwork(
                f"critic.{name}",
                "critic",
                as_connection_layers(getattr(self, name)),
                as_connection_layers(getattr(target, name)),
                output_may_be_sparse=False,
            )
            for name in ("q1", "q2")
        ]

    def q1_value(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q1 alone, ``(B,)`` (TD3's actor loss)."""
        return self.q1(torch.cat([obs, action], dim=-1)).squeeze(-1)
