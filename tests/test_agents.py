"""The shipped agents (``agents/*/``): each loads from its policy file alone and scores above its README's threshold.

One row per agent: the env, the algorithm, the actor's input size, its share of zero weights, and the threshold
its README states for the mean deterministic return of its first episodes at env seed 0 (2, or more for an agent
whose returns vary from episode to episode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from lightning_sparse_rl.data.episodes import play_episodes
from lightning_sparse_rl.policy_files import load_policy

AGENTS_DIR = Path(__file__).resolve().parents[1] / "agents"


@dataclass(frozen=True)
class ShippedAgent:
    """What ``agents/<folder>/`` must hold and how well its policy must do."""

    folder: str
    env_id: str
    algorithm: str
    input_dim: int
    zero_share: tuple[float, float]  # the actor's share of zero weights lies in [low, high]
    threshold: int  # the mean return of `episodes` deterministic episodes at env seed 0 must exceed it
    episodes: int = 2


AGENTS = [
    ShippedAgent("halfcheetah-v5_ds-sac", "HalfCheetah-v5", "SAC", 17, (0.45, 0.55), 6500),
    ShippedAgent("halfcheetah-v5_anf-sac-noise90", "HalfCheetah-v5", "SAC", 170, (0.28, 0.34), 9500),
    ShippedAgent("hopper-v5_ds-sac", "Hopper-v5", "SAC", 11, (0.50, 0.55), 3000),
    ShippedAgent("ant-v5_ds-sac", "Ant-v5", "SAC", 105, (0.50, 0.55), 800, episodes=5),
    ShippedAgent("walker2d-v5_ds-sac", "Walker2d-v5", "SAC", 17, (0.50, 0.55), 1500, episodes=5),
]


def test_every_agent_folder_has_a_row():
    assert sorted(p.name for p in AGENTS_DIR.iterdir() if p.is_dir()) == sorted(a.folder for a in AGENTS)


@pytest.mark.parametrize("agent", AGENTS, ids=[a.folder for a in AGENTS])
def test_agent_loads_from_its_file_and_clears_its_threshold(agent):
    folder = AGENTS_DIR / agent.folder
    policy_file = folder / "policy.pt"
    assert policy_file.stat().st_size <= 1_000_000
    policy = load_policy(policy_file)
    assert (policy.algorithm, policy.env_spec.env_id) == (agent.algorithm, agent.env_id)
    assert policy.input_features.input_dim == agent.input_dim
    nonzero, total = policy.connections()
    low, high = agent.zero_share
    assert low <= 1 - nonzero / total <= high

    records = play_episodes(policy.env_spec, policy.act_numpy, episodes=agent.episodes, seed=0)
    assert np.mean([record.episode_return for record in records]) > agent.threshold

    readme = " ".join((folder / "README.md").read_text().split())  # Markdown may wrap the sentence anywhere
    stated = f"the mean over the first {agent.episodes} episodes is above **{agent.threshold:,}**".replace(",", " ")
    assert stated in readme
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["data"]["env_id"] == agent.env_id
    assert config["model"]["class_path"] == f"lightning_sparse_rl.{agent.algorithm}"
    assert "Evaluation over 5 episode(s)" in (folder / "train.log").read_text()
