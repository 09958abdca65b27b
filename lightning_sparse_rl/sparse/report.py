"""Text tables of per-layer sparsity, connection counts and FLOPs (printed at the start of a run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class LayerCount(NamedTuple):
    """Connections of one layer: ``n_in × n_out`` possible, ``active`` of them present."""

    n_in: int
    n_out: int
    active: int

    @property
    def possible(self) -> int:
        """``n_in·n_out``."""
        return self.n_in * self.n_out

    @property
    def sparsity(self) -> float:
        """Fraction of inactive connections."""
        return 1.0 - self.active / self.possible


def global_sparsity(layers: Sequence[LayerCount]) -> float:
    """``1 − Σ active / Σ possible`` over the layers of one network."""
    return 1.0 - sum(layer.active for layer in layers) / sum(layer.possible for layer in layers)


def forward_flops(layers: Sequence[LayerCount], sparse: bool = True) -> int:
    """Multiply-add FLOPs of one forward pass per sample: ``2 × connections`` (biases, activations not counted)."""
    return 2 * sum(layer.active if sparse else layer.possible for layer in layers)


def format_sparsity_table(title: str, layers: Sequence[LayerCount]) -> str:
    """The tutorial's ``Layer 1 | Layer 2 | …`` table with shapes, connections, global sparsity and FLOPs."""
    heads = ["", *(f"Layer {i}" for i in range(1, len(layers) + 1)), "Total"]
    rows = [
        ["shape", *(f"{layer.n_in}x{layer.n_out}" for layer in layers), ""],
        ["sparsity", *(f"{100 * layer.sparsity:.1f}%" for layer in layers), f"{100 * global_sparsity(layers):.2f}%"],
        [
            "connections",
            *(f"{layer.active}/{layer.possible}" for layer in layers),
            f"{sum(x.active for x in layers)}/{sum(x.possible for x in layers)}",
        ],
    ]
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]
    lines = [title]
    for row in [heads, *rows]:
        lines.append(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    dense, sparse = forward_flops(layers, sparse=False), forward_flops(layers)
    lines.append(
        f"FLOPs per forward pass (per sample): dense {dense:,}, sparse {sparse:,} ({dense / sparse:.2f}x fewer)"
    )
    return "\n".join(lines)
