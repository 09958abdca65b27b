"""The fast paths of the update: what they skip must not change what is learned."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from helpers import short_fit

from lightning_sparse_rl import SAC, EnvDataModule

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_actor_step_computes_no_critic_gradients_and_matches_full_backward():
    """The actor's backward pass (``inputs=`` its parameters) gives the full backward's actor gradients."""
    torch.manual_seed(0)
    dm = EnvDataModule("Pendulum-v1", seed=0, start_timesteps=64, batch_size=32, buffer_size=1000)
    dm.setup("fit")
    dm.warm_up()
    model = SAC(dm.env_spec, hidden_width=32)
    batch = dm.buffer.sample(32)
    state = [stream.state_dict() for stream in model.policy_streams]
    full = model.actor_loss(batch)[0]
    full.backward()
    expected = [p.grad.clone() for p in model.actor.parameters()]
    model.zero_grad(set_to_none=True)
    for stream, saved in zip(model.policy_streams, state, strict=True):
        stream.load_state_dict(saved)
    loss = model.actor_loss(batch)[0]
    loss.backward(inputs=list(model.actor.parameters()))
    assert all(p.grad is None for p in model.critic.parameters())
    for p, g in zip(model.actor.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_compiled_losses_learn_the_same_parameters_as_eager(tmp_path):
    """``compile: true`` runs the compiled losses and ends (within float rounding) where eager does."""
    pytest.importorskip("torch._inductor")
    data = {"start_timesteps": 100, "max_timesteps": 40, "eval_freq": 40}
    _, eager, _ = short_fit(tmp_path / "eager", data=data)
    _, compiled, _ = short_fit(tmp_path / "compiled", data=data, model={"compile": True})
    assert "critic_loss" in compiled.__dict__ and "actor_loss" in compiled.__dict__
    assert compiled.gradient_steps == eager.gradient_steps == 40
    eager_params, compiled_params = _parameters(eager), _parameters(compiled)
    for name, value in eager_params.items():
        torch.testing.assert_close(compiled_params[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_compile_mode_is_checked():
    """An unknown ``compile_mode`` is rejected with the allowed modes."""
    dm = EnvDataModule("Pendulum-v1", seed=0)
    with pytest.raises(ValueError, match=r"compile_mode='fast'.*reduce-overhead"):
        SAC(dm.env_spec, compile=True, compile_mode="fast")


def test_benchmark_flop_count_matches_the_hand_count():
    """SAC at batch 256 on HalfCheetah (17 → 256 → 256 → 6): 1 135 872 multiply-adds per sample."""
    sys.path.insert(0, str(BENCHMARKS))
    from throughput import update_flops

    d, a, w = 17, 6, 256
    actor = d * w + w * w + w * 2 * a  # 72 960
    q = (d + a) * w + w * w + w  # 71 680 per Q network
    macs = 4 * actor + 6 * 2 * q - 2 * (d + a) * w - d * w
    assert macs == 1_135_872
    assert update_flops("SAC", 256) == 2 * macs * 256
    td3_actor = d * w + w * w + w * a
    td3 = td3_actor + 4 * 2 * q - 2 * (d + a) * w + 0.5 * (3 * td3_actor + 2 * q - d * w)
    assert update_flops("TD3", 256) == 2 * td3 * 256


def test_benchmark_runs_a_real_lsrl_fit_of_a_shipped_config(tmp_path):
    """The harness's ``lsrl`` case: a shipped config, patched, trained through ``lsrl fit`` for a few steps."""
    sys.path.insert(0, str(BENCHMARKS))
    import lsrl_runner

    rate = lsrl_runner.run("sac", batch_size=32, learning_starts=100, skip=5, steps=10, seed=0, device="cpu")
    assert rate > 0
    population = lsrl_runner.patched_config("td3", 32, 100, 5, 10, 0, "cpu", "r", "o", None, {}, 4, "bf16-mixed")
    assert population["seeds"] == [0, 1, 2, 3] and population["trainer"]["precision"] == "bf16-mixed"


def test_the_population_suite_picks_its_cases_and_counts_agent_steps():
    sys.path.insert(0, str(BENCHMARKS))
    import throughput

    names = throughput.population_case_names([1, 8], cuda_graphs=False)
    assert "lsrl SAC K=8 bf16" in names and "lsrl TD3 K=8 fp32 DST 90%" in names and "2x plain TD3" in names
    assert "lsrl SAC K=4 fp32" not in names and not any("CUDA graphs" in name for name in names)
    assert "lsrl SAC K=1 fp32 CUDA graphs" in throughput.population_case_names([32], cuda_graphs=True)
    assert throughput.agents_of("lsrl SAC K=16 bf16") == 16 and throughput.agents_of("2x SB3 SAC") == 2
