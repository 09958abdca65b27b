"""Every random consumer of a run has its own stream, derived from the run seed with a named offset."""

from __future__ import annotations

import hashlib

import torch
from helpers import short_fit

from lightning_sparse_rl.callbacks import (
    DynamicSparsityCallback,
    FeaturePermutationCallback,
    SparsityDistributionCallback,
)
from lightning_sparse_rl.seeding import STREAM_OFFSETS, RandomStream, stream_seed


def test_stream_offsets_are_distinct_and_the_train_env_uses_the_run_seed():
    """No two streams share an offset; the train env is seeded with the run seed itself, as the original."""
    assert len(set(STREAM_OFFSETS.values())) == len(STREAM_OFFSETS)
    names = ("train_env", "dst", "masks", "network_noise", "buffer", "eval_env", "permutation")
    assert [stream_seed(7, name) for name in names] == [7, 8, 9, 10, 11, 10_007, 50_007]


def test_dynamic_sparsity_and_permutations_draw_from_different_streams(tmp_path):
    """Both callbacks derive their seeds: different seeds, different random numbers (they used to share one)."""
    dst = DynamicSparsityCallback(update_period=50)
    permutation = FeaturePermutationCallback(period=100)
    callbacks = [SparsityDistributionCallback(global_sparsity=0.5), dst, permutation]
    short_fit(tmp_path, seed=3, data={"fake_features": 0.5, "max_timesteps": 150}, trainer={"callbacks": callbacks})
    dst_seed, permutation_seed = dst.streams[0].seed, permutation.streams[0].seed
    assert (dst_seed, permutation_seed) == (3 + 1, 3 + 50_000)
    first = torch.Generator().manual_seed(dst_seed)
    second = torch.Generator().manual_seed(permutation_seed)
    assert not torch.equal(torch.randperm(20, generator=first), torch.randperm(20, generator=second))


def test_every_consumer_of_a_run_has_its_own_seed(tmp_path):
    """Masks, DST, permutations, network noise and buffer sampling: all derived from the run seed, no two alike."""
    masks = SparsityDistributionCallback(global_sparsity=0.5)
    dst = DynamicSparsityCallback(update_period=50)
    permutation = FeaturePermutationCallback(period=100)
    callbacks = [masks, dst, permutation]
    data = {"fake_features": 0.5, "max_timesteps": 150}
    _, module, dm = short_fit(tmp_path, seed=3, data=data, trainer={"callbacks": callbacks})
    seeds = {
        "masks": masks.agent_seeds[0],
        "dst": dst.streams[0].seed,
        "permutation": permutation.streams[0].seed,
        "network_noise": module.input_features.noise.streams[0].seed,
        "buffer": dm.buffer.streams[0].seed,
        "policy": module.policy_streams[0].seed,
    }
    assert seeds == {name: stream_seed(3, name) for name in seeds}
    assert len(set(seeds.values())) == len(seeds)


def _draws(stream: RandomStream, n: int = 5) -> torch.Tensor:
    return torch.rand(n, generator=stream.generator("cpu"))


def test_a_saved_stream_continues_exactly_on_the_same_device_type():
    straight, stopped = RandomStream(42), RandomStream(42)
    assert stopped.state_dict() == {"seed": 42, "device": "cpu", "state": None}  # no draw yet: the seed says it all
    expected = torch.cat([_draws(straight), _draws(straight)])
    _draws(stopped)
    resumed = RandomStream(0)
    resumed.load_state_dict(stopped.state_dict())
    assert resumed.seed == 42
    assert torch.equal(torch.cat([expected[:5], _draws(resumed)]), expected)


def test_a_stream_saved_on_another_device_type_continues_from_a_hash_of_its_state():
    """The rule for a run moved between CPU and GPU: a deterministic new seed, the SHA-256 of the saved state."""
    state = torch.Generator().manual_seed(7).get_state()
    saved = {"seed": 7, "device": "cuda:0", "state": state}
    first, second = RandomStream(0), RandomStream(0)
    first.load_state_dict(saved)
    second.load_state_dict(saved)
    seed = int.from_bytes(hashlib.sha256(state.numpy().tobytes()).digest()[:8], "little") % 2**63
    expected = torch.rand(5, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(_draws(first), expected) and torch.equal(_draws(second), expected)
    assert not torch.equal(expected, torch.rand(5, generator=torch.Generator().manual_seed(7)))
