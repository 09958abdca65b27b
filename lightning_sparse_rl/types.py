"""The contracts between the parts: what flows from the env side to the algorithms, and what callbacks may use.

* :class:`Transition`, :class:`TrainBatch`, :class:`EvalEpisode`, :class:`EpisodeStats`: the data the env
  side (``data/``) hands to the algorithms and callbacks;
* :class:`Agent`: what the env side needs from a policy (``act``);
* :class:`SparseAlgorithm`: what the sparsity, connectivity and permutation callbacks need from an algorithm;
* :class:`BufferRefill`: what the permutation callback needs from the data side (a refill request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lightning_sparse_rl.data.noise_features import InputFeatures
    from lightning_sparse_rl.sparse import SparseNetwork


class Transition(NamedTuple):
    """A minibatch of transitions of every agent of a population: leading dimensions ``(K, B)`` (agents, batch).

    Attributes:
        obs: observations, shape ``(K, B, obs_dim)``.
        action: actions taken, shape ``(K, B, action_dim)``.
        reward: rewards, shape ``(K, B)``.
        next_obs: next observations, shape ``(K, B, obs_dim)``; for a truncated episode this is the
            last observation of the episode (not the reset observation).
        terminated: 1.0 where the episode truly ended (no bootstrapping), else 0.0, shape ``(K, B)``.
            A time-limit truncation is stored as 0.0, so TD targets bootstrap through it.
        discount: the discount of each sample's bootstrap term, shape ``(K, B)``; ``None``: the algorithm's γ
            (one-step transitions). An ``n``-step transition (:class:`TransitionWindow`) bootstraps from the
            ``m``-th next observation with ``γ^m``, ``m ≤ n``.

    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    discount: Tensor | None = None


class TransitionWindow(NamedTuple):
    """Windows of up to ``n`` consecutive stored transitions, one per sample, for multi-step TD targets.

    A window holds ``m ≤ n`` steps: step 0, and step ``j`` when step ``j − 1`` is in, did not end its episode
    (terminated or truncated) and is not the newest stored transition. Leading dimensions ``(K, B)``.

    Attributes:
        obs: step 0's observation, shape ``(K, B, obs_dim)``.
        action: step 0's action, shape ``(K, B, action_dim)``.
        rewards: the ``m`` steps' rewards, then zeros, shape ``(K, B, n)``.
        next_obs: the last step's next observation, shape ``(K, B, obs_dim)``.
        terminated: 1.0 where the last step terminated its episode, else 0.0, shape ``(K, B)``.
        length: ``m``, int64, shape ``(K, B)``.

    """

    obs: Tensor
    action: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminated: Tensor
    length: Tensor


class Agent(Protocol):
    """What the DataModule needs from the LightningModule it serves: the policies of its ``K`` agents."""

    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions ``(K, B, action_dim)`` in env units for observations ``(K, B, obs_dim)``, without grad."""
        ...


class EpisodeStats(NamedTuple):
    """A finished training episode.

    Attributes:
        index: 0-based number of the agent's episode in the main loop (warm-up episodes are not counted).
        episode_return: undiscounted return.
        length: env steps in the episode.
        duration_s: wall-clock seconds the episode took (updates included).

    """

    index: int
    episode_return: float
    length: int
    duration_s: float


class TrainBatch(NamedTuple):
    """What ``training_step`` receives for one env step of every agent.

    Attributes:
        minibatches: ``updates_per_step`` independent minibatches, already on the module's device: one-step
            transitions, or windows of ``n`` for multi-step targets.
        train_step: main-loop env steps taken so far by each agent, this one included (1-based; warm-up
            excluded).
        episodes: per agent, the training episode that this step ended, if any.

    """

    minibatches: tuple[Transition | TransitionWindow, ...]
    train_step: int
    episodes: tuple[EpisodeStats | None, ...]


class EvalEpisode(NamedTuple):
    """One deterministic evaluation episode of every agent: undiscounted ``returns`` and ``lengths``, per agent."""

    returns: tuple[float, ...]
    lengths: tuple[int, ...]


class SparseAlgorithm(Protocol):
    """What the sparsity, connectivity and permutation callbacks need from the algorithm they act on.

    Attributes:
        seeds: the seed of each agent of the population (``K = len(seeds)``).
        gradient_steps: gradient updates so far (our counter, not Lightning's ``global_step``).
        input_features: the networks' input layout (real and noise features, each agent's permutation).
        device: where the networks live.

    """

    seeds: tuple[int, ...]
    gradient_steps: int
    input_features: InputFeatures
    device: torch.device

    def sparse_networks(self) -> list[SparseNetwork]:
        """Every network with maskable layers (actor, critics), with the targets that follow them."""
        ...

    def network_loss(self, family: str, batch: Transition) -> Tensor:
        """The loss of the network family (``actor`` or ``critic``) on ``batch``, for dense-gradient regrowth."""
        ...

    def transition(self, minibatch: Transition | TransitionWindow) -> Transition:
        """A training minibatch as the losses read it (a window of ``n`` steps as ``n``-step transitions)."""
        ...


#: How a buffer refill acts: uniformly ``random`` actions, or the ``current`` stochastic policy.
RefillMode = Literal["random", "current"]


class BufferRefill(Protocol):
    """What the feature-permutation callback needs from the data side."""

    def request_refill(self, steps: int, mode: RefillMode) -> None:
        """Ask for the replay buffers to be emptied and refilled with ``steps`` env steps before the next one."""
        ...
