"""TD3 (Fujimoto et al. 2018): clipped double Q, target policy smoothing, delayed actor updates."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lightning_sparse_rl.algorithms.base import OffPolicyAlgorithm, OptimizerName, sum_of_agent_means
from lightning_sparse_rl.data.envs import EnvSpec
from lightning_sparse_rl.networks import DeterministicActor, TwinQCritic, init_members_
from lightning_sparse_rl.sparse import SparseNetwork
from lightning_sparse_rl.types import Transition
from lightning_sparse_rl.validation import check_at_least, check_positive


def td3_td_target(
    reward: Tensor, terminated: Tensor, next_q1: Tensor, next_q2: Tensor, discount: float | Tensor
) -> Tensor:
    """``y = r + γ·(1 − terminated)·min(Q̄1, Q̄2)(s′, ã′)``, all shapes ``(K, B)``; truncation bootstraps.

    ``discount``: γ, or per sample ``γ^m`` of an ``m``-step transition (``(K, B)``).
    """
    return reward + discount * (1.0 - terminated) * torch.min(next_q1, next_q2)


class TD3(OffPolicyAlgorithm):
    """Twin Delayed DDPG with the original's defaults (lr 1e-3, Adam weight decay 2e-4, 2×256 ReLU).

    Args:
        env_spec: see :class:`OffPolicyAlgorithm`.
        policy_noise: std of the target-smoothing noise, in units of the action half-range.
        noise_clip: clip of the target-smoothing noise, in units of the action half-range.
        policy_freq: update the actor and both targets every N critic updates.
        expl_noise: std of the Gaussian exploration noise, in units of the action half-range.
        hidden_layers: number of hidden layers of the actor and of each critic.
        hidden_width: units per hidden layer.
        activation: hidden activation, see :data:`lightning_sparse_rl.networks.ACTIVATIONS`.
        Other arguments: see :class:`OffPolicyAlgorithm`.

    """

    def __init__(
        self,
        env_spec: EnvSpec | None = None,
        lr: float = 1e-3,
        weight_decay: float = 2e-4,
        discount: float = 0.99,
        tau: float = 0.005,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        policy_freq: int = 2,
        expl_noise: float = 0.1,
        hidden_layers: int = 2,
        hidden_width: int = 256,
        activation: str = "relu",
        optimizer: OptimizerName = "adam",
        compile: bool = False,
        compile_mode: str | None = None,
        agent_seeds: list[int] | None = None,
    ) -> None:
        super().__init__(env_spec, lr, weight_decay, discount, tau, optimizer, compile, compile_mode, agent_seeds)
        check_at_least("policy_noise", policy_noise, 0.0)
        check_at_least("noise_clip", noise_clip, 0.0)
        check_at_least("expl_noise", expl_noise, 0.0)
        check_positive("policy_freq", policy_freq)
        self.save_hyperparameters()
        assert env_spec is not None
        k, obs_dim, action_dim = self.agents, self.input_features.input_dim, env_spec.action_dim
        low, high = env_spec.action_low, env_spec.action_high
        self.actor = DeterministicActor(k, obs_dim, action_dim, hidden_layers, hidden_width, activation, low, high)
        self.critic = TwinQCritic(k, obs_dim, action_dim, hidden_layers, hidden_width, activation)
        generators = self.init_generators()  # PyTorch's nn.Linear init, as the original
        init_members_(self.actor, "default", generators)
        init_members_(self.critic, "default", generators)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.read_inputs_here(self.actor, self.critic, self.actor_target, self.critic_target)

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Actor and critic optimizers."""
        return [self.make_optimizer(self.actor.parameters()), self.make_optimizer(self.critic.parameters())]

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """The actor's action, plus clipped Gaussian exploration noise unless deterministic."""
        action = self.actor(obs)
        if deterministic:
            return action
        exploration = self.hparams.expl_noise * self.actor.action_scale
        noise = self.actor.standard_normal(action.shape, action.device) * exploration
        return (action + noise).clamp(self.actor.action_low, self.actor.action_high)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """As the base class; checkpoints of version 0.1.0 also held the action bounds, now the actor's (not saved)."""
        for key in ("action_low", "action_high"):
            checkpoint["state_dict"].pop(key, None)
        super().on_load_checkpoint(checkpoint)

    def sparse_networks(self) -> list[SparseNetwork]:
        """The actor and the twin critics, each with its target network."""
        layers, target_layers = self.actor.sparse_layers(), self.actor_target.sparse_layers()
        actor = SparseNetwork("actor", "actor", layers, target_layers, True, range(self.agents))
        critics = self.critic.sparse_networks(self.critic_target)
        return [actor, *critics]

    def critic_loss(self, batch: Transition) -> Tensor:
        """``Σ_agents MSE(Q1, y) + MSE(Q2, y)``, ``y`` from the smoothed target action (:func:`td3_td_target`)."""
        actor = self.actor
        with torch.no_grad():
            clip = self.hparams.noise_clip * actor.action_scale
            draws = actor.standard_normal(batch.action.shape, batch.action.device)
            noise = (draws * (self.hparams.policy_noise * actor.action_scale)).clamp(-clip, clip)
            next_action = (self.actor_target(batch.next_obs) + noise).clamp(actor.action_low, actor.action_high)
            next_q1, next_q2 = self.critic_target(batch.next_obs, next_action)
            discount = self.hparams.discount if batch.discount is None else batch.discount
            target = td3_td_target(batch.reward, batch.terminated, next_q1, next_q2, discount)
        q1, q2 = self.critic(batch.obs, batch.action)
        return sum_of_agent_means((q1 - target).pow(2) + (q2 - target).pow(2))

    def actor_loss(self, batch: Transition) -> Tensor:
        """``−Σ_agents mean Q1(s, π(s))``."""
        return -sum_of_agent_means(self.critic.q1_value(batch.obs, self.actor(batch.obs)))

    def network_loss(self, family: str, batch: Transition) -> Tensor:
        """Critic or actor loss on ``batch``."""
        return self.critic_loss(batch) if family == "critic" else self.actor_loss(batch)

    def update(self, batch: Transition) -> dict[str, Tensor]:
        """Critic step every call; actor step and Polyak updates of both targets every ``policy_freq``."""
        actor_optimizer, critic_optimizer = self.optimizers()
        critic_loss = self.critic_loss(batch)
        self.optimizer_step(critic_optimizer, critic_loss, "critic")
        losses = {"critic_loss": critic_loss.detach() / self.agents}

        # The original TD3 counts the update first (total_it += 1), then steps the actor when total_it % d == 0:
        # the 2nd, 4th, ... update here (gradient_steps counts the updates before this one).
        if (self.gradient_steps + 1) % self.hparams.policy_freq == 0:
            actor_loss = self.actor_loss(batch)
            self.optimizer_step(actor_optimizer, actor_loss, "actor")
            self.update_target(self.critic_target, self.critic)
            self.update_target(self.actor_target, self.actor)
            losses["actor_loss"] = actor_loss.detach() / self.agents
        return losses
