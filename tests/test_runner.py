"""The Lightning-free env runner, and the DataModule's refill request (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_sparse_rl import EnvDataModule
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.data.runner import EnvRunner


class _ConstantAgent:
    """An :class:`Agent` that pushes with a fixed torque, whatever it observes."""

    def __init__(self, torque: float) -> None:
        self.torque = torque
        self.calls: list[bool] = []

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.calls.append(deterministic)
        return torch.full((obs.shape[0], 1), self.torque)


def _runner(seed: int = 0, capacity: int = 1000) -> EnvRunner:
    spec = EnvDataModule("Pendulum-v1").env_spec
    return EnvRunner(spec, seed, ReplayBuffer(capacity, spec.observation_dim, spec.action_dim, "cpu", seed=1))


def test_the_runner_steps_warms_up_and_refills_without_lightning():
    runner = _runner()
    runner.warm_up(250)  # Pendulum episodes last 200 steps: one warm-up episode ends, then a fresh one
    assert (runner.env_steps, runner.episodes, len(runner.buffer)) == (250, 0, 250)
    agent = _ConstantAgent(2.0)
    finished = [runner.step(agent) for _ in range(200)]
    assert [e.index for e in finished if e is not None] == [0] and finished[-1] is not None
    assert finished[-1].length == 200 and agent.calls == [False] * 200  # training acts stochastically
    stored = runner.buffer.split_rows(runner.buffer.storage[250:450])
    assert torch.all(stored.action == 2.0) and stored.terminated.sum() == 0  # truncation is not termination
    runner.refill(30, None)
    assert (runner.env_steps, runner.episodes, len(runner.buffer)) == (480, 1, 30)
    runner.close()


def test_evaluation_is_deterministic_and_restores_the_eval_env_of_an_interrupted_evaluation():
    runner = _runner()
    agent = _ConstantAgent(-1.0)
    runner.begin_evaluation()
    first = runner.evaluate_episode(agent)
    saved = runner.state_dict()  # taken mid-evaluation: the eval env as it was when the evaluation began
    second = runner.evaluate_episode(agent)
    runner.end_evaluation()
    assert agent.calls == [True] * 400 and first.length == second.length == 200
    assert first.episode_return != second.episode_return  # another initial state, same policy
    again = _runner()
    again.load_state_dict(saved)
    assert again.evaluate_episode(agent) == first  # the interrupted evaluation is repeated exactly


def test_a_restored_runner_continues_the_same_transitions():
    straight, stopped = _runner(seed=5), _runner(seed=5)
    for _ in range(120):
        straight.step(None)
        stopped.step(None)
    resumed = _runner(seed=99)  # another seed: everything must come from the state
    resumed.load_state_dict(stopped.state_dict())
    for _ in range(150):  # across the episode end at 200
        straight.step(None)
        resumed.step(None)
    assert (resumed.env_steps, resumed.episodes) == (straight.env_steps, straight.episodes) == (270, 1)
    np.testing.assert_array_equal(resumed.obs, straight.obs)
    assert torch.equal(resumed.buffer.storage[:150], straight.buffer.storage[120:270])


def test_a_refill_request_waits_for_the_next_step_and_is_part_of_the_checkpoint():
    dm = EnvDataModule("Pendulum-v1", seed=0, start_timesteps=50, buffer_size=1000, batch_size=8)
    dm.setup("fit")
    dm.warm_up()
    dm.request_refill(20, "random")
    assert len(dm.buffer) == 50 and dm.pending_refill == (20, "random")  # nothing happens until the next step
    with pytest.raises(ValueError, match="steps=0 must be > 0"):
        dm.request_refill(0, "random")
    state = dm.state_dict()
    resumed = EnvDataModule("Pendulum-v1", seed=0, start_timesteps=50, buffer_size=1000, batch_size=8)
    resumed.load_state_dict(state)
    resumed.setup("fit")
    assert resumed.pending_refill == (20, "random") and len(resumed.buffer) == 50
    resumed.carry_out_refill()
    dm.carry_out_refill()
    assert resumed.pending_refill is None and len(resumed.buffer) == 20 and resumed.runner.env_steps == 70
    assert torch.equal(resumed.buffer.storage[:20], dm.buffer.storage[:20])
    assert resumed.train_steps == 0  # refill steps are not training steps


def test_constructing_a_datamodule_runs_no_rollout_until_its_spec_is_needed():
    dm = EnvDataModule("Pendulum-v1", fake_features=0.5, noise_distribution="marginals", marginal_rollout_steps=500)
    assert "env_spec" not in vars(dm)  # cheap to construct: the marginals rollout waits for the first use
    spec = dm.env_spec
    assert len(spec.network_noise.quantiles) == 3 and dm.env_spec is spec  # computed once
