import numpy as np
import pytest
import torch

from lightning_sparse_rl.data.replay_buffer import ReplayBuffer


def _add(buffer, value):
    """One step of every agent: agent k stores ``value + 100·k``."""
    k = np.arange(buffer.agents, dtype=np.float32)[:, None]
    obs = np.full((buffer.agents, 3), value, dtype=np.float32) + 100 * k
    buffer.add(obs, -obs[:, :2], obs[:, 0], obs + 0.5, np.full(buffer.agents, value % 2 == 1))


def test_fields_round_trip_and_wrap_around():
    buffer = ReplayBuffer(capacity=4, obs_dim=3, action_dim=2, device="cpu", seeds=[0])
    for value in range(6):  # 6 transitions into 4 slots: 0 and 1 are overwritten by 4 and 5
        _add(buffer, value)
    assert len(buffer) == 4 and buffer.position == 2
    stored = buffer.split_rows(buffer.storage[0])
    assert stored.reward.tolist() == [4.0, 5.0, 2.0, 3.0]
    assert torch.equal(stored.obs[:, 0], stored.reward)
    assert torch.equal(stored.action[:, 1], -stored.reward)
    assert torch.equal(stored.next_obs[:, 2], stored.reward + 0.5)
    assert stored.terminated.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_sampling_shapes_device_and_only_filled_rows():
    buffer = ReplayBuffer(capacity=100, obs_dim=3, action_dim=2, device="cpu", seeds=[0])
    for value in range(10):
        _add(buffer, value)
    batch = buffer.sample(256)
    assert batch.obs.shape == (1, 256, 3) and batch.action.shape == (1, 256, 2)
    assert batch.reward.shape == batch.terminated.shape == (1, 256)
    assert batch.obs.device.type == "cpu" and batch.obs.dtype == torch.float32
    assert set(batch.reward.flatten().tolist()) == set(map(float, range(10)))  # never the empty rows


def test_each_agent_samples_its_own_rows_with_its_own_stream():
    population = ReplayBuffer(capacity=50, obs_dim=3, action_dim=2, device="cpu", seeds=[7, 8, 9])
    alone = ReplayBuffer(capacity=50, obs_dim=3, action_dim=2, device="cpu", seeds=[8])
    for value in range(50):
        _add(population, value)
        _add(alone, value + 100)  # agent 1 of the population stores value + 100
    batch = population.sample(32)
    assert batch.obs.shape == (3, 32, 3)
    for k in range(3):  # rows of agent k only
        assert torch.all((batch.reward[k] >= 100 * k) & (batch.reward[k] < 100 * k + 50))
    assert torch.equal(batch.reward[1], alone.sample(32).reward[0])  # the same indices as the agent alone
    assert not torch.equal(batch.reward[0] + 100, batch.reward[1])  # other seeds, other indices


def test_sampling_is_seeded():
    a, b = (ReplayBuffer(50, 3, 2, "cpu", seeds=[7]) for _ in range(2))
    for value in range(50):
        _add(a, value)
        _add(b, value)
    assert torch.equal(a.sample(32).reward, b.sample(32).reward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sampling_on_gpu():
    buffer = ReplayBuffer(10, 3, 2, "cuda", seeds=[0, 1])
    _add(buffer, 1)
    assert buffer.sample(4).obs.device.type == "cuda"


def test_empty_buffer_and_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 3, 2, "cpu", seeds=[0])
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(5, 3, 2, "cpu", seeds=[0]).sample(1)
