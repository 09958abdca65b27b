"""Member-batched actor and critic networks for SAC and TD3 (MLPs, as in the original, for ``M`` members at once).

Every network holds the networks of all agents of a population as members of :class:`MemberLinear` layers:
inputs ``(M, B, in)``, outputs ``(M, B, out)``. Member ``m`` is initialised from its own generator, so an
agent's initial weights depend only on its own seed (stream ``init``), not on the population around it.

Under ``bf16-mixed`` precision (autocast) the matrix products run in bf16; every network returns float32, so
what follows (squashing, log-probabilities, TD targets, losses) is computed in float32.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_sparse_rl.data.replay_buffer import available_memory
from lightning_sparse_rl.floating_point import apply_configured
from lightning_sparse_rl.seeding import RandomStream
from lightning_sparse_rl.sparse import MemberLinear, SparseNetwork, TargetBudget, lerp_weights_, linear_layers
from lightning_sparse_rl.validation import UserInputError

# Every process that builds a network computes with denormal floats flushed to zero, on all its threads
# (see lightning_sparse_rl.floating_point; LSRL_FLUSH_DENORMALS=0 turns it off).
apply_configured()

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


def member_normal(shape: Sequence[int], generators: Sequence[torch.Generator]) -> Tensor:
    """Standard normal draws of ``shape`` ``(K, ...)`` (one row per agent): agent ``k``'s from ``generators[k]``."""
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device) for g in generators])


class MemberMLP(nn.Module):
    """``in_dim → hidden_width (× hidden_layers, each followed by the activation) → out_dim`` for ``members``.

    With ``out_dim=0`` the network ends after the last hidden activation (a trunk for heads).
    """

    def __init__(
        self, members: int, in_dim: int, out_dim: int, hidden_layers: int, hidden_width: int, activation: str
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        if hidden_layers < 1 or hidden_width < 1:
            raise ValueError(f"hidden_layers={hidden_layers} and hidden_width={hidden_width} must both be >= 1")
        sizes = [in_dim] + [hidden_width] * hidden_layers + ([out_dim] if out_dim > 0 else [])
        self.layers = nn.ModuleList(MemberLinear(members, a, b) for a, b in itertools.pairwise(sizes))
        self.activation = ACTIVATIONS[activation]()
        self.hidden_layers = hidden_layers

    @override
    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        """``(M, B, in_dim)`` → ``(M, B, out)``; with ``members``, only those members (``x`` holds only theirs)."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if members is None else layer.forward_members(x, members)
            if i < self.hidden_layers:
                x = self.activation(x)
        return x


def mlp_parameters_at_least(hidden_layers: int, hidden_width: int) -> int:
    """The fewest parameters of one member of a :class:`MemberMLP` (or trunk and head) of this shape, whatever the env.

    Its input and its output have at least one feature each.
    """
    return (hidden_layers - 1) * hidden_width**2 + (hidden_layers + 2) * hidden_width


#: float32 copies of an actor-critic agent's networks while it trains, at the least: actor, Q1 and Q2 with their
#: gradients and one optimizer state each (SGD's momentum; Adam keeps two), and the target Q1 and Q2.
_TRAINING_COPIES = 3 * 3 + 2


def check_actor_critic_fits(agents: int, hidden_layers: int, hidden_width: int, device: torch.device) -> None:
    """Refuse networks that cannot be trained in the memory of ``device``, before any is made (one line).

    The estimate is a lower bound (:func:`mlp_parameters_at_least`, :data:`_TRAINING_COPIES`), so no run that fits
    is refused.

    Raises:
        UserInputError: the networks and optimizer states of ``agents`` agents need more than is available.

    """
    needed = 4 * agents * _TRAINING_COPIES * mlp_parameters_at_least(hidden_layers, hidden_width)
    available = available_memory(device)
    if available is not None and needed > available:
        population = f"K={agents:,} agents with " if agents > 1 else ""
        raise UserInputError(
            f"{population}hidden_layers={hidden_layers:,}, hidden_width={hidden_width:,} needs at least "
            f"{needed / 2**30:,.1f} GiB for the networks and optimizer states on {device}, but {available / 2**30:.1f} "
            "GiB are available: lower --model.hidden_width or --model.hidden_layers"
            + (" or the number of seeds" if agents > 1 else "")
        )


def init_members_(module: nn.Module, init: str, generators: Sequence[torch.Generator]) -> None:
    """Initialise every :class:`MemberLinear` of ``module`` (in definition order) from per-member generators.

    ``generators`` has one generator per agent; a layer with ``c·K`` members (twin critics: ``c = 2``)
    gives member ``j·K + i`` agent ``i``'s generator. Layer by layer, so agent ``i``'s draws come in the
    same order whatever ``K`` is.
    """
    for layer in linear_layers(module):
        copies, rest = divmod(layer.members, len(generators))
        if rest:
            raise ValueError(f"a layer of {layer.members} members cannot hold {len(generators)} agents")
        layer.reset_parameters(init, list(generators) * copies)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float, budget: TargetBudget | None = None) -> None:
    """``θ_target ← (1 − τ)·θ_target + τ·θ_source`` for every layer, in place (``θ_source``: the masked weight).

    Unmasked target layers of masked source layers are kept as sparse as their source
    (:class:`~lightning_sparse_rl.sparse.TargetBudget`; pass the algorithm's, which remembers the layers
    already in sync, or none to check every layer).
    """
    pairs = _layer_pairs(target, source)
    budget = budget if budget is not None else TargetBudget()
    checked = budget.layers_to_check(pairs)
    budget.lerp_(checked, tau)
    lerp_weights_([pair for pair in pairs if pair not in checked], tau)
    torch._foreach_lerp_([t.bias for t, _ in pairs], [s.bias for _, s in pairs], tau)


#: Per target network: its source network and their layer pairs (the layers of a network never change).
_LAYER_PAIRS: weakref.WeakKeyDictionary[
    nn.Module, tuple[weakref.ref[nn.Module], list[tuple[MemberLinear, MemberLinear]]]
] = weakref.WeakKeyDictionary()


def _layer_pairs(target: nn.Module, source: nn.Module) -> list[tuple[MemberLinear, MemberLinear]]:
    """``(target layer, source layer)`` in definition order, found once per pair of networks."""
    known = _LAYER_PAIRS.get(target)
    if known is None or known[0]() is not source:
        known = (weakref.ref(source), list(zip(linear_layers(target), linear_layers(source), strict=True)))
        _LAYER_PAIRS[target] = known
    return known[1]


#: What a network reads for stored observations ``(K, B, observation_dim)``: ``(K, B, input_dim)`` (the
#: algorithm's :class:`~lightning_sparse_rl.data.noise_features.InputFeatures`: noise features, permutation).
InputReader = Callable[[Tensor], Tensor]


def _unchanged(obs: Tensor) -> Tensor:
    return obs


class ReadsObservations(nn.Module):
    """A network that takes stored observations and reads them through its algorithm's input features.

    By default it reads them unchanged. :meth:`read_through` connects the algorithm's input features and
    random streams: every call of the network then draws its own noise features, as the original ANF code
    draws them inside each forward pass. Both are held by reference, not as submodules: the algorithm
    saves them once, and all its networks share them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inputs: InputReader = _unchanged
        self.streams: Sequence[RandomStream] = ()

    def read_through(self, inputs: InputReader, streams: Sequence[RandomStream]) -> None:
        """Read observations through ``inputs``; draw random actions from ``streams`` (one per agent)."""
        self.inputs = inputs
        self.streams = streams

    def standard_normal(self, shape: Sequence[int], device: torch.device) -> Tensor:
        """Standard normal draws ``shape`` ``(K, ...)``, agent ``k``'s from its own stream (on ``device``)."""
        return member_normal(shape, [stream.generator(device) for stream in self.streams])


class _ActionScaling(ReadsObservations):
    """Maps ``[-1, 1]`` to the env's action box: ``a = x·scale + bias``.

    The box's bounds ``action_low``/``action_high`` are kept too (not saved: they come from the env).
    """

    def __init__(self, action_low: tuple[float, ...], action_high: tuple[float, ...]) -> None:
        super().__init__()
        low = torch.tensor(action_low, dtype=torch.float32)
        high = torch.tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_high", high, persistent=False)


class SquashedGaussianActor(_ActionScaling):
    """SAC actor: an MLP trunk and one head for the mean and the log-std; actions are ``tanh``-squashed.

    Shapes: observations ``(M, B, obs_dim)`` → actions ``(M, B, action_dim)`` in env units.
    """

    def __init__(
        self,
        members: int,
        obs_dim: int,
        action_dim: int,
        hidden_layers: int,
        hidden_width: int,
        activation: str,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
    ) -> None:
        super().__init__(action_low, action_high)
        self.trunk = MemberMLP(members, obs_dim, 0, hidden_layers, hidden_width, activation)
        self.head = MemberLinear(members, hidden_width, 2 * action_dim)  # [mean, log-std]
        self.action_dim = action_dim

    def sparse_layers(self) -> tuple[MemberLinear, ...]:
        """Trunk layers, then the head ``hidden → 2·action_dim``."""
        return (*self.trunk.layers, self.head)

    @override
    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clamped log-std of the pre-squash Gaussian, each ``(M, B, action_dim)``."""
        mean, log_std = self.head(self.trunk(self.inputs(obs))).float().split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised action ``(M, B, action_dim)`` and its log-probability ``(M, B)``.

        Agent ``k``'s Gaussian noise comes from its own stream (:meth:`read_through`).
        """
        mean, log_std = self(obs)
        eps = self.standard_normal(mean.shape, mean.device)
        u = mean + log_std.exp() * eps
        squashed = torch.tanh(u)
        # log N(u; mean, std) with (u - mean) / std = eps, minus the log-det of the tanh + scaling.
        log_prob = -0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI
        log_prob = log_prob - torch.log(self.action_scale * (1.0 - squashed.pow(2)) + 1e-6)
        return squashed * self.action_scale + self.action_bias, log_prob.sum(dim=-1)

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action ``tanh(mean)`` in env units, ``(M, B, action_dim)``."""
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class DeterministicActor(_ActionScaling):
    """TD3 actor: ``tanh(MLP(obs))`` scaled to the action box; ``(M, B, obs_dim)`` → ``(M, B, action_dim)``."""

    def __init__(
        self,
        members: int,
        obs_dim: int,
        action_dim: int,
        hidden_layers: int,
        hidden_width: int,
        activation: str,
        action_low: tuple[float, ...],
        action_high: tuple[float, ...],
    ) -> None:
        super().__init__(action_low, action_high)
        self.net = MemberMLP(members, obs_dim, action_dim, hidden_layers, hidden_width, activation)

    def sparse_layers(self) -> tuple[MemberLinear, ...]:
        """The MLP's layers, input to output."""
        return tuple(self.net.layers)

    @override
    def forward(self, obs: Tensor) -> Tensor:
        """Actions ``(M, B, action_dim)`` in env units."""
        return torch.tanh(self.net(self.inputs(obs)).float()) * self.action_scale + self.action_bias

    def deterministic(self, obs: Tensor) -> Tensor:
        """The evaluation action (the actor's output, no exploration noise), ``(M, B, action_dim)``."""
        return self(obs)


class TwinQCritic(ReadsObservations):
    """The two Q networks of ``agents`` agents as ``2·agents`` members of one batched MLP on ``[obs, action]``.

    Members ``0…K−1`` are the agents' Q1, ``K…2K−1`` their Q2: one batched product per layer computes both.
    Shapes: ``(K, B, obs_dim), (K, B, action_dim) → 2 × (K, B)``.
    """

    def __init__(
        self, agents: int, obs_dim: int, action_dim: int, hidden_layers: int, hidden_width: int, activation: str
    ) -> None:
        super().__init__()
        self.agents = agents
        self.net = MemberMLP(2 * agents, obs_dim + action_dim, 1, hidden_layers, hidden_width, activation)

    @override
    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q1 and Q2 values, each ``(K, B)``."""
        x = torch.cat([self.inputs(obs), action], dim=-1)
        q = self.net(torch.cat([x, x], dim=0)).float().squeeze(-1)
        return q[: self.agents], q[self.agents :]

    def q1_value(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q1 alone, ``(K, B)`` (TD3's actor loss): only the Q1 members are computed."""
        x = torch.cat([self.inputs(obs), action], dim=-1)
        return self.net(x, members=slice(0, self.agents)).float().squeeze(-1)

    def sparse_networks(self, target: TwinQCritic) -> list[SparseNetwork]:
        """Q1 and Q2 (family ``critic``, dense output) with the matching members of ``target``."""
        k = self.agents
        layers, target_layers = tuple(self.net.layers), tuple(target.net.layers)
        return [
            SparseNetwork(f"critic.{name}", "critic", layers, target_layers, False, range(start, start + k))
            for name, start in (("q1", 0), ("q2", k))
        ]
