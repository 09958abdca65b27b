import numpy as np
import pytest
import torch

from lightning_sparse_rl import EnvDataModule
from lightning_sparse_rl.data.envs import resolve_env_id


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [("HalfCheetah-v3", "HalfCheetah-v5"), ("Hopper-v2", "Hopper-v5"), ("Walker2d-v3", "Walker2d-v5")],
)
def test_mujoco_py_ids_map_to_v5_with_a_notice(legacy, expected):
    env_id, notice = resolve_env_id(legacy)
    assert env_id == expected
    assert legacy in notice and expected in notice and "mujoco-py" in notice


@pytest.mark.parametrize("env_id", ["HalfCheetah-v4", "HalfCheetah-v5", "Pendulum-v1", "MyEnv-v3"])
def test_other_ids_are_unchanged(env_id):
    assert resolve_env_id(env_id) == (env_id, None)


def test_legacy_id_builds_the_v5_env():
    dm = EnvDataModule("HalfCheetah-v3", max_timesteps=10)
    assert dm.env_id == "HalfCheetah-v5"
    assert (dm.env_spec.observation_dim, dm.env_spec.action_dim) == (17, 6)
    assert dm.env_spec.action_low == (-1.0,) * 6


def test_discrete_actions_are_rejected():
    with pytest.raises(ValueError, match=r"CartPole-v1.*continuous Box"):
        EnvDataModule("CartPole-v1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size=0 must be > 0"),
        ({"max_timesteps": -5}, "max_timesteps=-5 must be > 0"),
        ({"start_timesteps": -1}, "start_timesteps=-1 must be >= 0"),
        ({"batch_size": 200, "buffer_size": 100}, "batch_size=200 is larger than buffer_size=100"),
    ],
)
def test_bad_values_are_rejected_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnvDataModule("Pendulum-v1", **kwargs)


def _filled(env_id, steps, seed=0):
    dm = EnvDataModule(env_id, seed=seed, buffer_size=1000, batch_size=8)
    dm.setup("fit")
    for _ in range(steps):
        dm.runner.step(None)
    return dm, dm.buffer.split_rows(dm.buffer.storage[0, :steps])


def test_truncation_is_stored_as_not_terminated_with_the_true_last_observation():
    dm, rows = _filled("Pendulum-v1", 201)  # Pendulum truncates at 200 steps and never terminates
    assert rows.terminated.sum() == 0
    # Within an episode next_obs[i] == obs[i + 1]; across the truncation it is the final observation.
    assert torch.allclose(rows.next_obs[:199], rows.obs[1:200])
    assert not torch.allclose(rows.next_obs[199], rows.obs[200])
    assert dm.runner.episodes == [1]


def test_termination_is_stored_and_followed_by_a_reset():
    dm, rows = _filled("InvertedPendulum-v5", 300)
    ends = torch.nonzero(rows.terminated).flatten()
    assert len(ends) >= 2  # random actions drop the pole within a few dozen steps
    for i in ends[:-1].tolist():
        assert not torch.allclose(rows.next_obs[i], rows.obs[i + 1])
    assert dm.runner.env_steps == 300


def test_same_seed_same_transitions():
    _, a = _filled("HalfCheetah-v5", 50, seed=3)
    _, b = _filled("HalfCheetah-v5", 50, seed=3)
    _, c = _filled("HalfCheetah-v5", 50, seed=4)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.action, b.action)
    assert not np.allclose(a.action.numpy(), c.action.numpy())
