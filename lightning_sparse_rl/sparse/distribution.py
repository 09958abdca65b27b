"""Per-layer sparsity levels from a global target: ``uniform``, ``ER`` and ``new`` (docs/original_code.md §3.2).

Pure Python maths; layer sizes are neuron counts ``n_0 … n_L`` of a fully connected network, so layer
``l`` (1-based in messages) has ``C_l = n_{l-1}·n_l`` possible connections.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lightning_sparse_rl.validation import UserInputError

DistributionMethod = Literal["uniform", "ER", "new"]
DISTRIBUTION_METHODS: tuple[str, ...] = ("uniform", "ER", "new")

#: Absolute slack when turning a density into a connection count, so that e.g. 0.2·43776 = 8755.2
#: (computed as 8755.199999…) and 0.2·217600 = 43520 (computed as 43519.999…) both floor correctly.
_COUNT_TOLERANCE = 1e-6


def active_connections(sparsity: float, possible: int) -> int:
    """``floor((1 − sparsity)·possible)``: the exact number of active connections of a sparse layer."""
    return min(possible, max(0, math.floor((1.0 - sparsity) * possible + _COUNT_TOLERANCE)))


@dataclass(frozen=True)
class LayerSparsity:
    """Result of :func:`compute_layer_sparsity`.

    Attributes:
        sparsity: per-layer sparsity ``s_l`` in ``[0, 1)``; ``0`` means the layer is dense (no mask).
        possible: ``C_l = n_{l-1}·n_l`` per layer.
        connections: active connections per layer, ``floor((1 − s_l)·C_l)``.
        requested_global: the ``global_sparsity`` that was asked for.
        fallback: ``True`` when the request could not be met because every layer except a fixed
            input layer had to be dense; :attr:`global_sparsity` is then higher than requested.

    """

    sparsity: tuple[float, ...]
    possible: tuple[int, ...]
    connections: tuple[int, ...]
    requested_global: float
    fallback: bool

    @property
    def global_sparsity(self) -> float:
        """Achieved global sparsity ``1 − Σ connections / Σ possible``."""
        return 1.0 - sum(self.connections) / sum(self.possible)


def _raw_density(method: str, n_in: int, n_out: int, closeness: float, global_sparsity: float) -> float:
    """Density of a free layer before the common scaling factor ε (docs/original_code.md §3.2 step 4)."""
    if method == "uniform":
        return 1.0 - global_sparsity
    if method == "ER":
        return (n_in + n_out) / (n_in * n_out)
    return 2.0 / (n_in * n_out) ** closeness


def compute_layer_sparsity(
    global_sparsity: float,
    layer_sizes: Sequence[int],
    keep_dense: Sequence[bool],
    method: DistributionMethod = "uniform",
    closeness: float = 0.2,
    input_layer_sparsity: float = -1.0,
) -> LayerSparsity:
    """Distribute ``global_sparsity`` over the layers of one network (the original's exact algorithm).

    Args:
        global_sparsity: target fraction of inactive weights over all layers, in ``[0, 1)``.
        layer_sizes: neuron counts ``n_0 … n_L`` (input features first, outputs last).
        keep_dense: per connection layer (``L`` values), ``True`` to keep the layer dense.
        method: ``uniform`` (same density for all free layers), ``ER`` (density ∝ (n_in+n_out)/(n_in·n_out),
            Mocanu et al. 2018) or ``new`` (density ∝ (n_in·n_out)^−closeness, between the two).
        closeness: exponent of ``new``; → 0 gives uniform, 1 the widest spread.
        input_layer_sparsity: ``-1`` lets the method decide, ``0`` keeps layer 1 dense, a value in
            ``(0, 1)`` pins layer 1 to that sparsity and distributes the rest.

    Free layers whose scaled density would exceed 1 become dense and the rest is re-solved. Raises
    ``ValueError`` when a layer would need fewer than one connection; warns when a layer would have
    fewer connections than ``max(n_in, n_out)`` (some neurons must then be disconnected).

    """
    check_sparsity_arguments(global_sparsity, method, input_layer_sparsity, closeness)
    if len(layer_sizes) < 2 or any(n < 1 for n in layer_sizes):
        raise UserInputError(f"layer_sizes={list(layer_sizes)} needs at least 2 positive neuron counts")
    if len(keep_dense) != len(layer_sizes) - 1:
        raise UserInputError(f"keep_dense has {len(keep_dense)} values for {len(layer_sizes) - 1} connection layers")
    possible = tuple(a * b for a, b in itertools.pairwise(layer_sizes))
    dense = list(keep_dense)
    fixed_input = 0.0 < input_layer_sparsity < 1.0
    if input_layer_sparsity == 0.0:
        dense[0] = True
    total = sum(possible)
    needed = round((1.0 - global_sparsity) * total)

    while True:
        free = [i for i in range(len(possible)) if not dense[i] and not (fixed_input and i == 0)]
        sparse_needed = needed - sum(possible[i] for i in range(len(possible)) if dense[i])
        if fixed_input:
            sparse_needed -= round((1.0 - input_layer_sparsity) * possible[0])
        raw = {i: _raw_density(method, layer_sizes[i], layer_sizes[i + 1], closeness, global_sparsity) for i in free}
        current = sum(round(raw[i] * possible[i]) for i in free)
        if current == 0:
            return _fallback(possible, input_layer_sparsity if fixed_input else 0.0, global_sparsity)
        scale = sparse_needed / current
        density = {i: scale * raw[i] for i in free}
        too_dense = [i for i in free if density[i] > 1.0]
        if too_dense:
            dense[too_dense[0]] = True
            continue
        break

    for i in free:
        n_in, n_out = layer_sizes[i], layer_sizes[i + 1]
        if density[i] < 1.0 / possible[i]:
            raise UserInputError(
                f"global_sparsity={global_sparsity} with input_layer_sparsity={input_layer_sparsity} and "
                f"method={method!r} is impossible for layer sizes {list(layer_sizes)}: layer {i + 1} would need "
                f"density {density[i]:.3g} (< 1 connection). Lower global_sparsity or input_layer_sparsity."
            )
        if density[i] < max(n_in, n_out) / possible[i]:
            warnings.warn(
                f"layer {i + 1} ({n_in}×{n_out}) is extremely sparse: {math.floor(density[i] * possible[i])} "
                f"connections for {max(n_in, n_out)} neurons, so some neurons get no connection",
                stacklevel=2,
            )
    sparsity = []
    for i in range(len(possible)):
        if dense[i]:
            sparsity.append(0.0)
        elif fixed_input and i == 0:
            sparsity.append(input_layer_sparsity)
        else:
            sparsity.append(1.0 - density[i])
    return _result(tuple(sparsity), possible, global_sparsity, fallback=False)


def _fallback(possible: tuple[int, ...], input_sparsity: float, requested: float) -> LayerSparsity:
    """Every free layer had to be dense: only the pinned input layer stays sparse.

    See docs/original_code.md §3.2, step 5.
    """
    sparsity = (input_sparsity,) + (0.0,) * (len(possible) - 1)
    return _result(sparsity, possible, requested, fallback=True)


def _result(sparsity: tuple[float, ...], possible: tuple[int, ...], requested: float, fallback: bool) -> LayerSparsity:
    connections = tuple(active_connections(s, c) for s, c in zip(sparsity, possible, strict=True))
    return LayerSparsity(sparsity, possible, connections, requested, fallback)


def check_sparsity_arguments(
    global_sparsity: float, method: str, input_layer_sparsity: float = -1.0, closeness: float = 0.2
) -> None:
    """Raise ``ValueError`` naming the bad value and its allowed range (call early, before any training)."""
    if not 0.0 <= global_sparsity < 1.0:
        raise UserInputError(f"global_sparsity={global_sparsity!r} must be in [0, 1)")
    if not (input_layer_sparsity == -1.0 or 0.0 <= input_layer_sparsity < 1.0):
        raise UserInputError(f"input_layer_sparsity={input_layer_sparsity!r} must be -1 (free), 0 (dense) or in (0, 1)")
    if method not in DISTRIBUTION_METHODS:
        raise UserInputError(f"sparsity distribution method={method!r} must be one of {DISTRIBUTION_METHODS}")
    if not closeness > 0.0:
        raise UserInputError(f"closeness={closeness!r} must be > 0")
