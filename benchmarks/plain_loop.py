"""The reference: a minimal plain-PyTorch SAC / TD3 training loop, written as a researcher would.

CleanRL-style single-file code with the same networks and hyperparameters as ``lsrl fit`` (2x256 ReLU,
separate Q1 and Q2 networks, Xavier init for SAC, Adam with weight decay 2e-4, lr 1e-3, gamma 0.99,
tau 0.005, fixed alpha 0.2; TD3: policy noise 0.2 clipped at 0.5, actor delay 2, exploration noise 0.1)
and eager PyTorch throughout: the default ``torch.optim.Adam``, a numpy replay buffer, no logging.
It imports nothing from ``lightning_sparse_rl``, so it is the cost floor of the maths with eager
PyTorch, not a copy of our implementation.
"""

from __future__ import annotations

import copy
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_dim: int, out_dim: int, width: int = 256) -> nn.Sequential:
    """``in → width → width → out`` with ReLU."""
    return nn.Sequential(
        nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out_dim)
    )


class GaussianActor(nn.Module):
    """SAC's squashed Gaussian policy: trunk, mean head, log-std head."""

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mean = nn.Linear(256, action_dim)
        self.log_std = nn.Linear(256, action_dim)

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised tanh-squashed action in [-1, 1] and its log-probability."""
        h = self.trunk(obs)
        mean, log_std = self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        normal = torch.distributions.Normal(mean, log_std.exp())
        u = normal.rsample()
        action = torch.tanh(u)
        log_prob = normal.log_prob(u) - torch.log(1.0 - action.pow(2) + 1e-6)
        return action, log_prob.sum(-1)


def xavier_(module: nn.Module) -> None:
    """Xavier-uniform weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class Buffer:
    """Numpy replay buffer sampled uniformly with replacement."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, seed: int) -> None:
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.capacity, self.position, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        """Store one transition."""
        i = self.position
        self.obs[i], self.action[i], self.reward[i], self.next_obs[i], self.terminated[i] = (
            obs,
            action,
            reward,
            next_obs,
            terminated,
        )
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device) -> tuple[Tensor, ...]:
        """``obs, action, reward, next_obs, terminated`` tensors of ``batch_size`` rows."""
        idx = self.rng.integers(0, self.size, batch_size)
        fields = (self.obs, self.action, self.reward, self.next_obs, self.terminated)
        return tuple(torch.as_tensor(f[idx], device=device) for f in fields)


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``θ' ← (1 − τ)θ' + τθ``."""
    with torch.no_grad():
        for tp, p in zip(target.parameters(), source.parameters(), strict=True):
            tp.mul_(1.0 - tau).add_(p, alpha=tau)


def run(
    algo: str, env_id: str, batch_size: int, learning_starts: int, skip: int, steps: int, seed: int, device: str
) -> float:
    """Train ``algo`` (``SAC`` or ``TD3``); return env steps/s (one update each) over ``steps`` steps after ``skip``."""
    return run_windows(algo, env_id, batch_size, learning_starts, [(skip, skip + steps)], seed, device)[0]


def run_windows(
    algo: str,
    env_id: str,
    batch_size: int,
    learning_starts: int,
    windows: list[tuple[int, int]],
    seed: int,
    device: str,
) -> list[float]:
    """Train ``algo`` up to the last window's end; env steps/s over each window ``(first, end)`` of updates.

    Update ``u`` is the ``u``-th training step after ``learning_starts`` random ones (0-based), so the window
    ``(1000, 2000)`` times updates 1000 … 1999, measured in the same run as ``(20000, 21000)``.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    assert np.allclose(env.action_space.high, 1.0), "this reference assumes actions in [-1, 1]"
    q1, q2 = mlp(obs_dim + action_dim, 1).to(dev), mlp(obs_dim + action_dim, 1).to(dev)
    if algo == "SAC":
        actor = GaussianActor(obs_dim, action_dim).to(dev)
        for module in (actor, q1, q2):
            xavier_(module)
    else:
        actor = nn.Sequential(mlp(obs_dim, action_dim), nn.Tanh()).to(dev)
    q1_target, q2_target, actor_target = copy.deepcopy(q1), copy.deepcopy(q2), copy.deepcopy(actor)
    q_optimizer = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=1e-3, weight_decay=2e-4)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3, weight_decay=2e-4)
    gamma, tau, alpha = 0.99, 0.005, 0.2
    buffer = Buffer(1_000_000, obs_dim, action_dim, seed)
    obs, _ = env.reset(seed=seed)
    clock: dict[int, float] = {}  # update index → time at its start
    boundaries = {edge for window in windows for edge in window}
    last = max(end for _, end in windows)
    for step in range(learning_starts + last + 1):
        if step - learning_starts in boundaries:
            clock[step - learning_starts] = time.perf_counter()
        if step == learning_starts + last:
            break
        if step < learning_starts:
            action = env.action_space.sample()
        else:
            with torch.no_grad():
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=dev).unsqueeze(0)
                if algo == "SAC":
                    action = actor.sample(obs_t)[0][0].cpu().numpy()
                else:
                    action = actor(obs_t)[0].cpu().numpy()
                    action = (action + np.random.normal(0, 0.1, action_dim)).clip(-1, 1)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if step < learning_starts:
            continue

        b_obs, b_action, b_reward, b_next_obs, b_terminated = buffer.sample(batch_size, dev)
        with torch.no_grad():
            if algo == "SAC":
                next_action, next_log_prob = actor.sample(b_next_obs)
            else:
                noise = (torch.randn_like(b_action) * 0.2).clamp(-0.5, 0.5)
                next_action = (actor_target(b_next_obs) + noise).clamp(-1.0, 1.0)
            next_x = torch.cat([b_next_obs, next_action], 1)
            next_q = torch.min(q1_target(next_x), q2_target(next_x)).squeeze(-1)
            if algo == "SAC":
                next_q = next_q - alpha * next_log_prob
            target = b_reward + gamma * (1.0 - b_terminated) * next_q
        x = torch.cat([b_obs, b_action], 1)
        q_loss = F.mse_loss(q1(x).squeeze(-1), target) + F.mse_loss(q2(x).squeeze(-1), target)
        q_optimizer.zero_grad()
        q_loss.backward()
        q_optimizer.step()

        if algo == "SAC":
            pi, log_prob = actor.sample(b_obs)
            x_pi = torch.cat([b_obs, pi], 1)
            actor_loss = (alpha * log_prob - torch.min(q1(x_pi), q2(x_pi)).squeeze(-1)).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            polyak(q1_target, q1, tau)
            polyak(q2_target, q2, tau)
        elif (step - learning_starts + 1) % 2 == 0:
            actor_loss = -q1(torch.cat([b_obs, actor(b_obs)], 1)).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            polyak(q1_target, q1, tau)
            polyak(q2_target, q2, tau)
            polyak(actor_target, actor, tau)
    env.close()
    return [(end - first) / (clock[end] - clock[first]) for first, end in windows]
