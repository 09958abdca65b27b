"""The Lightning-free env runner of a population, and the DataModule's refill request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_sparse_rl import EnvDataModule
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.data.runner import EnvRunner


class _ConstantAgent:
    """An :class:`Agent` whose agent ``k`` pushes with torque ``torques[k]``, whatever it observes."""

    def __init__(self, *torques: float) -> None:
        self.torques = torch.tensor(torques)
        self.calls: list[bool] = []

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.calls.append(deterministic)
        return self.torques[:, None, None].expand(obs.shape[0], obs.shape[1], 1).clone()


def _runner(seeds=(0,), capacity: int = 1000, env_id: str = "Pendulum-v1") -> EnvRunner:
    spec = EnvDataModule(env_id).env_spec
    buffer = ReplayBuffer(capacity, spec.observation_dim, spec.action_dim, "cpu", seeds=list(seeds))
    return EnvRunner(spec, list(seeds), buffer)


def test_the_runner_steps_warms_up_and_refills_without_lightning():
    runner = _runner()
    runner.warm_up(250)  # Pendulum episodes last 200 steps: one warm-up episode ends, then a fresh one
    assert (runner.env_steps, runner.episodes, len(runner.buffer)) == (250, [0], 250)
    agent = _ConstantAgent(2.0)
    finished = [runner.step(agent)[0] for _ in range(200)]
    assert [e.index for e in finished if e is not None] == [0] and finished[-1] is not None
    assert finished[-1].length == 200 and agent.calls == [False] * 200  # training acts stochastically
    stored = runner.buffer.split_rows(runner.buffer.storage[0, 250:450])
    assert torch.all(stored.action == 2.0) and stored.terminated.sum() == 0  # truncation is not termination
    runner.refill(30, None)
    assert (runner.env_steps, runner.episodes, len(runner.buffer)) == (480, [1], 30)
    runner.close()


def test_agents_step_together_each_in_its_own_env_and_rows():
    """InvertedPendulum: random actions end episodes at different steps for different agents."""
    runner, alone = _runner((3, 4), env_id="InvertedPendulum-v5"), _runner((4,), env_id="InvertedPendulum-v5")
    ends = [[], []]
    for step in range(150):
        for k, episode in enumerate(runner.step(None)):
            if episode is not None:
                ends[k].append(step)
        alone.step(None)
    assert ends[0] and ends[1] and ends[0] != ends[1]  # each agent's own episodes
    assert runner.episodes == [len(ends[0]), len(ends[1])]
    assert torch.equal(runner.buffer.storage[1], alone.buffer.storage[0])  # agent 1 = the same seed alone
    rows = runner.buffer.split_rows(runner.buffer.storage[:, :150])
    for k in range(2):
        for i in ends[k][:-1]:  # a termination is stored, then the env is reset
            assert rows.terminated[k, i] == 1.0 and not torch.allclose(rows.next_obs[k, i], rows.obs[k, i + 1])


def test_evaluation_is_deterministic_and_restores_the_eval_envs_of_an_interrupted_evaluation():
    runner = _runner((0, 1))
    agent = _ConstantAgent(-1.0, 1.0)
    runner.begin_evaluation()
    first = runner.evaluate_episode(agent)
    saved = runner.state_dict()  # taken mid-evaluation: the eval envs as they were when the evaluation began
    second = runner.evaluate_episode(agent)
    runner.end_evaluation()
    assert agent.calls == [True] * 400 and first.lengths == second.lengths == (200, 200)
    assert first.returns != second.returns  # other initial states, same policies
    assert first.returns[0] != first.returns[1]  # each agent its own env and policy
    again = _runner((0, 1))
    again.load_state_dict(saved)
    assert again.evaluate_episode(agent) == first  # the interrupted evaluation is repeated exactly


def test_a_restored_runner_continues_the_same_transitions():
    straight, stopped = _runner((5, 6)), _runner((5, 6))
    for _ in range(120):
        straight.step(None)
        stopped.step(None)
    resumed = _runner((98, 99))  # other seeds: everything must come from the state
    resumed.load_state_dict(stopped.state_dict())
    for _ in range(150):  # across the episode end at 200
        straight.step(None)
        resumed.step(None)
    assert (resumed.env_steps, resumed.episodes) == (straight.env_steps, straight.episodes) == (270, [1, 1])
    np.testing.assert_array_equal(resumed.obs, straight.obs)
    assert torch.equal(resumed.buffer.storage[:, :150], straight.buffer.storage[:, 120:270])


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
    assert torch.equal(resumed.buffer.storage[:, :20], dm.buffer.storage[:, :20])
    assert resumed.train_steps == 0  # refill steps are not training steps


def test_constructing_a_datamodule_runs_no_rollout_until_its_spec_is_needed():
    dm = EnvDataModule("Pendulum-v1", fake_features=0.5, noise_distribution="marginals", marginal_rollout_steps=500)
    assert "env_spec" not in vars(dm)  # cheap to construct: the marginals rollout waits for the first use
    spec = dm.env_spec
    assert len(spec.network_noise.quantiles) == 3 and dm.env_spec is spec  # computed once
