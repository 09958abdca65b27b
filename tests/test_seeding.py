"""Every random consumer of a run has its own stream, derived from the run seed with a named offset."""

from __future__ import annotations

import torch
from helpers import short_fit

from lightning_sparse_rl.callbacks import (
    DynamicSparsityCallback,
    FeaturePermutationCallback,
    SparsityDistributionCallback,
)
from lightning_sparse_rl.seeding import STREAM_OFFSETS, stream_seed


def test_stream_offsets_are_distinct_and_keep_the_existing_seeds():
    """No two streams share an offset; the env-side offsets are the ones runs have always used."""
    assert len(set(STREAM_OFFSETS.values())) == len(STREAM_OFFSETS)
    assert [stream_seed(7, name) for name in ("buffer", "eval_env", "marginals", "env_noise", "eval_env_noise")] == [
        7,
        10_007,
        20_007,
        30_007,
        40_007,
    ]


def test_dynamic_sparsity_and_permutations_draw_from_different_streams(tmp_path):
    """Both callbacks derive their seeds: different seeds, different random numbers (they used to share one)."""
    dst = DynamicSparsityCallback(update_period=50)
    permutation = FeaturePermutationCallback(period=100)
    callbacks = [SparsityDistributionCallback(global_sparsity=0.5), dst, permutation]
    short_fit(tmp_path, seed=3, data={"fake_features": 0.5, "max_timesteps": 150}, trainer={"callbacks": callbacks})
    assert (dst.seed, permutation.seed) == (3 + 1, 3 + 50_000)
    first = torch.Generator().manual_seed(dst.seed)
    second = torch.Generator().manual_seed(permutation.seed)
    assert not torch.equal(torch.randperm(20, generator=first), torch.randperm(20, generator=second))
