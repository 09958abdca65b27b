"""Stable-Baselines3 SAC / TD3 with hyperparameters matched to ``lsrl fit``.

An optional benchmark dependency: ``pip install stable-baselines3`` (or ``pip install -e .[bench]``).
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np


def run(
    algo: str, env_id: str, batch_size: int, learning_starts: int, skip: int, steps: int, seed: int, device: str
) -> float:
    """Train SB3's ``algo``; return env steps/s (one update each) over ``steps`` steps after ``skip``.

    Matched: 2x256 ReLU, lr 1e-3, Adam weight decay 2e-4, gamma 0.99, tau 0.005, one gradient update per
    env step; SAC with fixed alpha 0.2; TD3 with policy noise 0.2 clipped at 0.5, delay 2 and Gaussian
    exploration noise 0.1.
    """
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    marks: dict[str, float] = {}
    start_at, end_at = learning_starts + skip, learning_starts + skip + steps

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == start_at:
                marks["start"] = time.perf_counter()
            if self.num_timesteps == end_at:
                marks["end"] = time.perf_counter()
                return False
            return True

    env = gym.make(env_id)
    common = {
        "learning_rate": 1e-3,
        "buffer_size": 1_000_000,
        "learning_starts": learning_starts,
        "batch_size": batch_size,
        "tau": 0.005,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "policy_kwargs": {"net_arch": [256, 256], "optimizer_kwargs": {"weight_decay": 2e-4}},
        "seed": seed,
        "device": device,
        "verbose": 0,
    }
    if algo == "SAC":
        model = SAC("MlpPolicy", env, ent_coef=0.2, target_update_interval=1, **common)
    else:
        action_dim = env.action_space.shape[0]
        noise = NormalActionNoise(np.zeros(action_dim), 0.1 * np.ones(action_dim))
        model = TD3(
            "MlpPolicy",
            env,
            action_noise=noise,
            policy_delay=2,
            target_policy_noise=0.2,
            target_noise_clip=0.5,
            **common,
        )
    model.learn(total_timesteps=end_at + 1, callback=Clock())
    env.close()
    return steps / (marks["end"] - marks["start"])
