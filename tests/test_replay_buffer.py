import numpy as np
import pytest
import torch

from lightning_sparse_rl.data.replay_buffer import ReplayBuffer


def _add(buffer, value):
    obs = np.full(3, value, dtype=np.float32)
    buffer.add(obs, np.full(2, -value), float(value), obs + 0.5, terminated=value % 2 == 1)


def test_fields_round_trip_and_wrap_around():
    buffer = ReplayBuffer(capacity=4, obs_dim=3, action_dim=2, device="cpu", seed=0)
    for value in range(6):  # 6 transitions into 4 slots: 0 and 1 are overwritten by 4 and 5
        _add(buffer, value)
    assert len(buffer) == 4 and buffer.position == 2
    stored = buffer.split_rows(buffer.storage)
    assert stored.reward.tolist() == [4.0, 5.0, 2.0, 3.0]
    assert torch.equal(stored.obs[:, 0], stored.reward)
    assert torch.equal(stored.action[:, 1], -stored.reward)
    assert torch.equal(stored.next_obs[:, 2], stored.reward + 0.5)
    assert stored.terminated.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_sampling_shapes_device_and_only_filled_rows():
    buffer = ReplayBuffer(capacity=100, obs_dim=3, action_dim=2, device="cpu", seed=0)
    for value in range(10):
        _add(buffer, value)
    batch = buffer.sample(256)
    assert batch.obs.shape == (256, 3) and batch.action.shape == (256, 2)
    assert batch.reward.shape == batch.terminated.shape == (256,)
    assert batch.obs.device.type == "cpu" and batch.obs.dtype == torch.float32
    assert set(batch.reward.tolist()) == set(map(float, range(10)))  # never the empty rows


def test_sampling_is_seeded():
    a, b = (ReplayBuffer(50, 3, 2, "cpu", seed=7) for _ in range(2))
    for value in range(50):
        _add(a, value)
        _add(b, value)
    assert torch.equal(a.sample(32).reward, b.sample(32).reward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sampling_on_gpu():
    buffer = ReplayBuffer(10, 3, 2, "cuda", seed=0)
    _add(buffer, 1)
    assert buffer.sample(4).obs.device.type == "cuda"


def test_empty_buffer_and_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 3, 2, "cpu", seed=0)
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(5, 3, 2, "cpu", seed=0).sample(1)
