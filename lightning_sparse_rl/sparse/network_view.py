"""How sparsity sees a network: its connection layers, input first, and those of its target network."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lightning_sparse_rl.sparse.masked_linear import is_masked

#: One connection layer: the ``nn.Linear`` modules reading the same input (SAC's mean and log-std heads).
ConnectionLayer = tuple[nn.Linear, ...]


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` modules of ``module`` in definition order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@dataclass(frozen=True)
class SparseNetwork:
    """How sparsity sees one network: its connection layers, input first, and its target's layers.

    Attributes:
        name: e.g. ``actor``, ``critic.q1`` (used in logs and tables).
        family: networks of one family share per-layer sparsity levels but get independent masks
            (Q1 and Q2 are both ``critic``); the algorithm's ``network_loss(family, batch)`` trains them.
        layers: connection layers from input to output.
        target_layers: the matching layers of the Polyak-averaged target network, or ``None``.
        output_may_be_sparse: whether ``output_layer_sparse`` applies (actors; critics keep a dense output).

    """

    name: str
    family: str
    layers: tuple[ConnectionLayer, ...]
    target_layers: tuple[ConnectionLayer, ...] | None
    output_may_be_sparse: bool

    @property
    def layer_sizes(self) -> list[int]:
        """Neuron counts ``n_0 … n_L`` (a layer of several modules counts their outputs together)."""
        return [self.layers[0][0].in_features] + [sum(m.out_features for m in layer) for layer in self.layers]


def masked_layers(networks: list[SparseNetwork]) -> list[nn.Linear]:
    """The masked ``nn.Linear`` modules of ``networks`` (online networks only)."""
    return [m for net in networks for group in net.layers for m in group if is_masked(m)]
