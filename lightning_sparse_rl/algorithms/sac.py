"""Soft Actor-Critic (Haarnoja et al. 2018) with twin critics, as in the ANF code (docs/original_code.md §2.3)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_sparse_rl.algorithms.base import OffPolicyAlgorithm, OptimizerName, sum_of_agent_means
from lightning_sparse_rl.data.envs import EnvSpec
from lightning_sparse_rl.networks import SquashedGaussianActor, TwinQCritic, init_members_
from lightning_sparse_rl.sparse import SparseNetwork
from lightning_sparse_rl.types import Transition
from lightning_sparse_rl.validation import check_at_least, check_positive


def sac_td_target(
    reward: Tensor,
    terminated: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor | float,
    discount: float | Tensor,
) -> Tensor:
    """``y = r + γ·(1 − terminated)·(min(Q̄1, Q̄2)(s′, a′) − α·log π(a′|s′))``, all shapes ``(K, B)`` (α: ``(K, 1)``).

    A time-limit truncation has ``terminated = 0`` and therefore bootstraps. ``discount``: γ, or per sample ``γ^m``
    of an ``m``-step transition (``(K, B)``; the entropy term is then taken at the bootstrap state only).
    """
    soft_value = torch.min(next_q1, next_q2) - alpha * next_log_prob
    return reward + discount * (1.0 - terminated) * soft_value


class SAC(OffPolicyAlgorithm):
    """Soft Actor-Critic: squashed Gaussian actor, twin critics, Polyak-averaged target critic.

    Defaults are the original's: lr 1e-3, Adam weight decay 2e-4, γ 0.99, τ 0.005, fixed α 0.2,
    2×256 ReLU, Xavier-uniform init. Each agent of a population has its own α when it is tuned.

    Args:
        env_spec: see :class:`OffPolicyAlgorithm`.
        temperature: α when it is not tuned.
        automatic_entropy_tuning: learn log α (starting at 0) towards entropy target −|A|.
        target_update_interval: Polyak-update the target critic every N gradient updates.
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
        temperature: float = 0.2,
        automatic_entropy_tuning: bool = False,
        target_update_interval: int = 1,
        hidden_layers: int = 2,
        hidden_width: int = 256,
        activation: str = "relu",
        optimizer: OptimizerName = "adam",
        compile: bool = False,
        compile_mode: str | None = None,
        agent_seeds: list[int] | None = None,
    ) -> None:
        super().__init__(env_spec, lr, weight_decay, discount, tau, optimizer, compile, compile_mode, agent_seeds)
        check_at_least("temperature", temperature, 0.0)
        check_positive("target_update_interval", target_update_interval)
        self.save_hyperparameters()
        assert env_spec is not None
        k, obs_dim, action_dim = self.agents, self.input_features.input_dim, env_spec.action_dim
        low, high = env_spec.action_low, env_spec.action_high
        self.actor = SquashedGaussianActor(k, obs_dim, action_dim, hidden_layers, hidden_width, activation, low, high)
        self.critic = TwinQCritic(k, obs_dim, action_dim, hidden_layers, hidden_width, activation)
        generators = self.init_generators()
        init_members_(self.actor, "xavier", generators)
        init_members_(self.critic, "xavier", generators)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.read_inputs_here(self.actor, self.critic, self.critic_target)
        self.target_entropy = -float(action_dim)
        self.log_alpha = nn.Parameter(torch.zeros(k)) if automatic_entropy_tuning else None

    @property
    def alpha(self) -> Tensor | float:
        """Each agent's entropy temperature α, ``(K, 1)`` (detached), or the fixed ``temperature``."""
        return self.log_alpha.detach().exp().unsqueeze(1) if self.log_alpha is not None else self.hparams.temperature

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Actor and critic optimizers (+ an Adam for log α without weight decay when tuning)."""
        optimizers = [self.make_optimizer(self.actor.parameters()), self.make_optimizer(self.critic.parameters())]
        if self.log_alpha is not None:
            optimizers.append(torch.optim.Adam([self.log_alpha], lr=self.hparams.lr))
        return optimizers

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """``tanh(mean)`` when deterministic, else a sample of the policy."""
        return self.actor.deterministic(obs) if deterministic else self.actor.sample(obs)[0]

    def sparse_networks(self) -> list[SparseNetwork]:
        """The actor (no target) and the twin critics with their target critics."""
        critics = self.critic.sparse_networks(self.critic_target)
        actor = SparseNetwork("actor", "actor", self.actor.sparse_layers(), None, True, range(self.agents))
        return [actor, *critics]

    def critic_loss(self, batch: Transition) -> Tensor:
        """``Σ_agents MSE(Q1, y) + MSE(Q2, y)`` with the soft TD target ``y`` of :func:`sac_td_target`."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch.next_obs)
            next_q1, next_q2 = self.critic_target(batch.next_obs, next_action)
            discount = self.hparams.discount if batch.discount is None else batch.discount
            target = sac_td_target(
                batch.reward, batch.terminated, next_q1, next_q2, next_log_prob, self.alpha, discount
            )
        q1, q2 = self.critic(batch.obs, batch.action)
        return sum_of_agent_means((q1 - target).pow(2) + (q2 - target).pow(2))

    def actor_loss(self, batch: Transition) -> tuple[Tensor, Tensor]:
        """``Σ_agents mean(α·log π(ã|s) − min(Q1, Q2)(s, ã))``, ã reparameterised; also ``log π`` ``(K, B)``."""
        action, log_prob = self.actor.sample(batch.obs)
        q1_pi, q2_pi = self.critic(batch.obs, action)
        return sum_of_agent_means(self.alpha * log_prob - torch.min(q1_pi, q2_pi)), log_prob

    def network_loss(self, family: str, batch: Transition) -> Tensor:
        """Critic or actor loss on ``batch``."""
        return self.critic_loss(batch) if family == "critic" else self.actor_loss(batch)[0]

    def update(self, batch: Transition) -> dict[str, Tensor]:
        """Critic step, actor step, optional α step, then the target critic's Polyak update."""
        optimizers = self.optimizers()
        actor_optimizer, critic_optimizer = optimizers[0], optimizers[1]

        critic_loss = self.critic_loss(batch)
        self.optimizer_step(critic_optimizer, critic_loss, "critic")
        actor_loss, log_prob = self.actor_loss(batch)
        self.optimizer_step(actor_optimizer, actor_loss, "actor")

        k = self.agents
        losses = {"critic_loss": critic_loss.detach() / k, "actor_loss": actor_loss.detach() / k}
        if self.log_alpha is not None:
            alpha_loss = -sum_of_agent_means(self.log_alpha.unsqueeze(1) * (log_prob.detach() + self.target_entropy))
            self.optimizer_step(optimizers[2], alpha_loss, "entropy temperature (alpha)")
            losses["alpha_loss"] = alpha_loss.detach() / k
            losses["alpha"] = self.log_alpha.detach().exp().mean()

        # As the original SAC code: it checks its update count before counting this update (updates % interval),
        # so the first update already moves the target (unlike TD3's policy_freq, counted after; see td3.py).
        if self.gradient_steps % self.hparams.target_update_interval == 0:
            self.update_target(self.critic_target, self.critic)
        return losses
