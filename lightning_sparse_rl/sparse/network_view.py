"""How sparsity sees a network: its layers, input first, the members that form it, and its target network."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lightning_sparse_rl.sparse.masked_linear import is_masked
from lightning_sparse_rl.sparse.member_linear import MemberLinear


def linear_layers(module: nn.Module) -> list[MemberLinear]:
    """The :class:`MemberLinear` layers of ``module`` in definition order."""
    return [m for m in module.modules() if isinstance(m, MemberLinear)]


@dataclass(frozen=True)
class SparseNetwork:
    """How sparsity sees one network of every agent of a population: its layers and the members that hold it.

    Layers are member-batched; agent ``i`` of the population owns member ``members.start + i`` of every
    layer (the twin critics are two networks of one batched module: Q1 in members ``0…K−1``, Q2 in
    ``K…2K−1``).

    Attributes:
        name: e.g. ``actor``, ``critic.q1`` (used in logs and tables).
        family: networks of one family share per-layer sparsity levels but get independent masks
            (Q1 and Q2 are both ``critic``); the algorithm's ``network_loss(family, batch)`` trains them.
        layers: layers from input to output.
        target_layers: the matching layers of the Polyak-averaged target network, or ``None``.
        output_may_be_sparse: whether ``output_layer_sparse`` applies (actors; critics keep a dense output).
        members: the members of the layers that hold this network, one per agent.

    """

    name: str
    family: str
    layers: tuple[MemberLinear, ...]
    target_layers: tuple[MemberLinear, ...] | None
    output_may_be_sparse: bool
    members: range

    @property
    def layer_sizes(self) -> list[int]:
        """Neuron counts ``n_0 … n_L`` of one agent's network."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]


def masked_layers(networks: list[SparseNetwork]) -> list[MemberLinear]:
    """The masked layers of ``networks`` (online networks only), each once."""
    layers = [layer for net in networks for layer in net.layers if is_masked(layer)]
    return list(dict.fromkeys(layers))
