"""RLx2's dynamic-capacity replay buffer: drop the oldest data once the policy has moved away from it.

Every ``check_interval`` training steps, for each agent: the mean squared distance between the current policy's
deterministic actions on the ``samples`` oldest stored observations and the actions stored with them, both scaled
to ``[−1, 1]`` by the action bounds and halved,

    D = 1/(2·N·|A|) · Σ_i ‖(π(s_i) − a_i) / half-range‖²,

and if ``D > threshold`` while the agent samples from more than ``min_size`` transitions, the oldest
``drop_fraction`` of them are no longer sampled. New steps then refill the buffer at one transition per step, up
to ``buffer_size``: the capacity shrinks by fractions and grows back by steps, keeping the data close to the
current policy (Tan et al., ICLR 2023).

Where it differs from the RLx2 code: there, ``a_i`` is the behaviour policy's noise-free action, stored as an extra
column; here it is the action taken. For TD3 (exploration noise σ = 0.1 of the half-range) that adds about
σ²/2 = 0.005 to ``D``, against the threshold 0.2; for SAC it adds the policy's own spread, so raise the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.types import Agent
from lightning_sparse_rl.validation import check_in_range, check_positive


@dataclass(frozen=True)
class DynamicCapacity:
    """Settings of the dynamic-capacity buffer (defaults: the RLx2 code's for TD3).

    Attributes:
        threshold: policy distance ``D`` above which the oldest data are dropped.
        check_interval: training steps (env steps of the main loop) between checks.
        min_size: no drop while an agent samples from this many transitions or fewer.
        drop_fraction: fraction of an agent's sampled transitions dropped at once, oldest first.
        samples: oldest transitions on which ``D`` is measured (RLx2: 8 × the batch size = 2048 at batch 256).

    """

    threshold: float = 0.2
    check_interval: int = 10_000
    min_size: int = 100_000
    drop_fraction: float = 0.1
    samples: int = 2048

    def __post_init__(self) -> None:
        check_positive("dynamic_buffer.threshold", self.threshold)
        check_positive("dynamic_buffer.check_interval", self.check_interval)
        check_positive("dynamic_buffer.min_size", self.min_size)
        check_in_range("dynamic_buffer.drop_fraction", self.drop_fraction, 0.0, 1.0, low_inclusive=False)
        check_positive("dynamic_buffer.samples", self.samples)


def policy_distance(policy_actions: Tensor, stored_actions: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``D`` per agent: half the mean squared difference of actions ``(K, N, |A|)`` scaled by the half-range."""
    half_range = (high - low) / 2
    return ((policy_actions - stored_actions) / half_range).pow(2).mean(dim=(1, 2)) / 2


@torch.no_grad()
def adjust_capacity(
    buffer: ReplayBuffer, agent: Agent, settings: DynamicCapacity, low: Tensor, high: Tensor
) -> tuple[list[float], list[int]]:
    """One check of every agent's buffer (see the module docstring); the distances and the sizes after it."""
    sizes = buffer.agent_sizes()
    count = min(settings.samples, *sizes)
    oldest = [buffer.oldest(k, count) for k in range(buffer.agents)]
    obs = torch.stack([t.obs for t in oldest])
    stored = torch.stack([t.action for t in oldest])
    actions = agent.act(obs, deterministic=True).to(stored.device, stored.dtype)
    distances = policy_distance(actions, stored, low.to(stored.device), high.to(stored.device)).tolist()
    for k, (distance, size) in enumerate(zip(distances, sizes, strict=True)):
        if distance > settings.threshold and size > settings.min_size:
            buffer.drop_oldest(k, int(settings.drop_fraction * size))
    return distances, buffer.agent_sizes()
