"""Text tables of per-layer sparsity, connection counts and FLOPs (printed at the start of a run)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

from lightning_sparse_rl.sparse.distribution import active_connections


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


def format_schedule_table(
    family: str,
    layer_sizes: Sequence[int],
    finals: Sequence[float],
    steps: Sequence[int],
    sparsity_at: Callable[[float, int], float],
) -> str:
    """Per-layer sparsity (%) of a pruning schedule at ``steps``: one row per layer that ends sparse, and the network.

    ``sparsity_at(final, step)`` is the schedule (e.g. ``CubicSparsity.sparsity``); ``finals`` the layers' final
    levels. Counts are floored as the masks' are.
    """
    possible = [n_in * n_out for n_in, n_out in itertools.pairwise(layer_sizes)]
    heads = ["gradient step", *(f"{step:,}" for step in steps)]
    rows = []
    for i, final in enumerate(finals, start=1):
        if final > 0:
            rows.append([f"layer {i}", *(f"{100 * sparsity_at(final, step):.1f}%" for step in steps)])

    def network(step: int) -> str:
        active = sum(
            active_connections(sparsity_at(f, step), n) if f > 0 else n for f, n in zip(finals, possible, strict=True)
        )
        return f"{100 * (1 - active / sum(possible)):.2f}%"

    rows.append(["network", *(network(step) for step in steps)])
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(len(heads))]
    lines = [f"{family}: gradual pruning schedule (sparsity reached at each step)"]
    for row in [heads, *rows]:
        lines.append(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
