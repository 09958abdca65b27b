"""``MemberLinear``: ``M`` independent linear layers applied as one batched matrix product.

A *member* is one of the ``M`` layers stacked in a member-batched layer, and only that: the actor's layers
have one member per agent (``M = K``), the twin critic's two per agent, every agent's Q1 then every agent's
Q2 (``M = 2K``). An *agent* is one of the ``K`` agents of a population, one per seed; replay buffers, envs
and random streams are per agent.

A population of ``K`` agents (and the twin critics of each) is trained in one process by stacking the
weights of its members: weight ``(M, in, out)``, bias ``(M, out)``, input ``(M, B, in)`` → output
``(M, B, out)`` with one ``baddbmm``. Member ``m``'s output depends only on member ``m``'s input and
parameters, and every elementwise optimizer (Adam, SGD, weight decay) keeps members independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from typing_extensions import override


class MemberLinear(nn.Module):
    """``y[m] = x[m] @ weight[m] + bias[m]`` for every member ``m``.

    Args:
        members: ``M``, independent layers stacked.
        in_features: input size of each member.
        out_features: output size of each member.

    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        if members < 1 or in_features < 1 or out_features < 1:
            raise ValueError(f"members={members}, in_features={in_features}, out_features={out_features} must be >= 1")
        self.members = members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))

    @override
    def extra_repr(self) -> str:
        """``members, in_features, out_features``."""
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"

    @override
    def forward(self, x: Tensor) -> Tensor:
        """``(M, B, in)`` → ``(M, B, out)``."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.effective_weight())

    def forward_members(self, x: Tensor, members: slice) -> Tensor:
        """Only the members in ``members`` (a slice): ``(m, B, in)`` → ``(m, B, out)``."""
        return torch.baddbmm(self.bias[members].unsqueeze(1), x, self.effective_weight()[members])

    def effective_weight(self) -> Tensor:
        """``weight``, read from the stored weight directly when its only parametrization returns it (a mask).

        ``parametrize``'s ``weight`` property walks its general chain at every read (about 6 µs on a CPU, ~20 reads
        per update); a parametrization marked ``returns_stored_weight``
        (:class:`~lightning_sparse_rl.sparse.WeightMask`) returns the stored weight itself outside ``torch.compile``,
        so calling it gives the very tensor the property would, cached or not.
        """
        chains = self._modules.get("parametrizations")
        chain = None if chains is None else chains._modules.get("weight")
        if chain is None or torch.compiler.is_compiling():
            return self.weight
        only = chain._modules.get("0")
        if len(chain._modules) == 1 and getattr(only, "returns_stored_weight", False):
            return only(chain._parameters["original"])
        return self.weight

    @torch.no_grad()
    def reset_parameters(self, init: str, generators: Sequence[torch.Generator]) -> None:
        """Initialise member ``m`` from ``generators[m]`` (one per member).

        ``xavier``: weights ~ U(±√(6/(in+out))), zero biases (the original SAC). ``default``: PyTorch's
        ``nn.Linear`` init, weights and biases ~ U(±1/√in) (the original TD3).
        """
        if len(generators) != self.members:
            raise ValueError(f"need one generator per member: {self.members}, got {len(generators)}")
        if init == "xavier":
            bound, bias_bound = math.sqrt(6.0 / (self.in_features + self.out_features)), 0.0
        elif init == "default":
            bound = bias_bound = 1.0 / math.sqrt(self.in_features)
        else:
            raise ValueError(f"init={init!r} must be 'xavier' or 'default'")
        weight, bias = self.weight, self.bias
        for m, generator in enumerate(generators):
            draws = torch.rand(weight.shape[1:], generator=generator, device=generator.device)
            weight[m] = ((2.0 * draws - 1.0) * bound).to(weight.device)
            if bias_bound:
                draws = torch.rand(bias.shape[1:], generator=generator, device=generator.device)
                bias[m] = ((2.0 * draws - 1.0) * bias_bound).to(bias.device)
            else:
                bias[m] = 0.0
