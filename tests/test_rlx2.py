"""RLx2's parts: n-step targets by hand (episode ends inside the window), the dynamic capacity rule, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import short_fit
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl.algorithms.n_step import n_step_transition
from lightning_sparse_rl.algorithms.td3 import td3_td_target
from lightning_sparse_rl.callbacks import DynamicSparsityCallback, RLProgressReporter, SparsityDistributionCallback
from lightning_sparse_rl.data.dynamic_buffer import DynamicCapacity, adjust_capacity, policy_distance
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO

#: (obs, reward, next_obs, terminated) of 6 stored steps: an episode that terminates (rows 0-2), one truncated by
#: the time limit after row 4 (its next observation 12 is not the next row's 20), and a third one.
ROWS = [(0, 1, 1, 0), (1, 2, 2, 0), (2, 3, 3, 1), (10, 4, 11, 0), (11, 5, 12, 0), (20, 6, 21, 0)]


def _buffer(rows=ROWS, capacity=10, agents=1):
    buffer = ReplayBuffer(capacity, 1, 1, "cpu", list(range(agents)))
    for obs, reward, next_obs, terminated in rows:
        k = np.ones((agents, 1), dtype=np.float32)
        buffer.add(k * obs, k * 0.5, k[:, 0] * reward, k * next_obs, k[:, 0] * terminated)
    return buffer


def _alive(window):
    """``(K, B, n)``: 1 for each of a window's steps, 0 after."""
    return (torch.arange(window.rewards.shape[-1]) < window.length.unsqueeze(-1)).int()


def test_n_step_targets_by_hand_with_episode_ends_inside_the_window():
    window = _buffer().windows(torch.arange(6).unsqueeze(0), 3)
    batch = n_step_transition(window, discount=0.5)
    # start: alive steps; R = Σ 0.5^j r; the bootstrap is the last alive step's (next obs, terminated), γ^m.
    expected = {
        0: ([1, 1, 1], 1 + 0.5 * 2 + 0.25 * 3, 3, 1, 0.125),  # terminates at its 3rd step: no bootstrap
        1: ([1, 1, 0], 2 + 0.5 * 3, 3, 1, 0.25),  # the sum stops at the termination
        2: ([1, 0, 0], 3, 3, 1, 0.5),
        3: ([1, 1, 0], 4 + 0.5 * 5, 12, 0, 0.25),  # truncated after 2 steps: bootstrap from 12 with γ²
        4: ([1, 0, 0], 5, 12, 0, 0.5),
        5: ([1, 0, 0], 6, 21, 0, 0.5),  # the newest row: nothing after it is read
    }
    for start, (alive, reward, next_obs, terminated, discount) in expected.items():
        assert _alive(window)[0, start].tolist() == alive, start
        assert batch.reward[0, start].item() == pytest.approx(reward), start
        assert batch.next_obs[0, start, 0].item() == next_obs and batch.terminated[0, start].item() == terminated
        assert batch.discount[0, start].item() == pytest.approx(discount), start
        assert batch.obs[0, start, 0].item() == ROWS[start][0]
    # TD3's target with the per-sample discount: y = 6.5 + 0.25·(1 − 0)·min(10, 8) = 8.5; terminated: y = R.
    q1, q2 = torch.full((1, 6), 10.0), torch.full((1, 6), 8.0)
    target = td3_td_target(batch.reward, batch.terminated, q1, q2, batch.discount)
    assert target[0, 3].item() == pytest.approx(8.5) and target[0, 0].item() == pytest.approx(2.75)


def test_windows_wrap_around_the_storage():
    buffer = _buffer(capacity=4)  # rows 2-5 remain, physically in the order of obs [11, 20, 2, 10]
    assert [buffer.storage[0, i, 0].item() for i in range(4)] == [11, 20, 2, 10]
    window = buffer.windows(torch.tensor([[2, 3]]), 3)  # obs 2 (terminates) and obs 10 → 11 → (truncated) 20
    assert _alive(window)[0].tolist() == [[1, 0, 0], [1, 1, 0]]
    assert n_step_transition(window, 0.5).next_obs[0, 1, 0].item() == 12


def test_a_window_never_reads_past_the_newest_row_even_where_the_next_row_would_seem_to_follow():
    """The row after the newest is unwritten (zeros) or, in a full buffer, the oldest: never part of the window."""
    empty_after = _buffer([(3, 1, 4, 0), (4, 2, 0, 0)])  # next obs 0, and the unwritten row 2 has obs 0
    assert _alive(empty_after.windows(torch.tensor([[0, 1]]), 3))[0].tolist() == [[1, 1, 0], [1, 0, 0]]
    wrapped = _buffer([(5, 1, 6, 0), (6, 2, 7, 0), (7, 3, 8, 0), (8, 4, 6, 0)], capacity=3)  # oldest left: obs 6
    newest = 0  # physical row of (8 → 6); the next physical row holds the oldest, (6 → 7)
    assert _alive(wrapped.windows(torch.tensor([[newest]]), 3))[0].tolist() == [[1, 0, 0]]


def _alive_by_hand(history, start_logical, written, window):
    """The windows' rule read from the written history, as stored (float32): later successors, no end between."""
    alive = [1]
    for j in range(1, window):
        i = start_logical + j  # written after the start, so stored while the start is
        follows = i < written and history[i - 1][3] == 0 and np.float32(history[i - 1][2]) == np.float32(history[i][0])
        alive.append(int(alive[-1] and follows))
    return alive


def test_windows_kept_while_adding_and_found_from_a_checkpoint_give_the_rule():
    """Windows taken between adds (kept by add), after a load (found from the rows), in a wrapped buffer: the steps,
    rewards, last next observation and end that the rule written out by hand gives."""
    rng = np.random.default_rng(3)
    capacity, window, agents = 7, 4, 2
    histories = [[] for _ in range(agents)]
    obs = [0.1] * agents  # float64 observations, not exact in the float32 rows
    kept = ReplayBuffer(capacity, 1, 1, "cpu", [0, 1])
    for written in range(1, 25):
        for k in range(agents):
            end = rng.choice(["go", "terminate", "truncate"], p=[0.6, 0.2, 0.2])
            histories[k].append((obs[k], rng.normal(), obs[k] + 0.1, float(end == "terminate")))
            obs[k] = obs[k] + 0.1 if end == "go" else 0.1 * float(rng.integers(1, 5))  # a new episode may repeat obs
        rows = np.array([h[-1] for h in histories])
        kept.add(rows[:, :1], rows[:, :1] * 0, rows[:, 1], rows[:, 2:3], rows[:, 3])
        loaded = ReplayBuffer(capacity, 1, 1, "cpu", [0, 1])
        loaded.load_state_dict(kept.state_dict())
        starts = torch.arange(min(written, capacity)).expand(agents, -1)
        for buffer in (kept, loaded):  # kept: by add since the first window; loaded: found from the rows
            windows = buffer.windows(starts, window)
            for k in range(agents):
                for row in range(starts.shape[1]):
                    logical = written - 1 - (kept.position - 1 - row) % capacity  # which write the row holds
                    alive = _alive_by_hand(histories[k], logical, written, window)
                    steps = histories[k][logical : logical + sum(alive)]
                    assert _alive(windows)[k, row].tolist() == alive
                    assert windows.rewards[k, row].tolist() == [np.float32(s[1]) for s in steps] + [0.0] * (
                        window - len(steps)
                    )
                    assert windows.obs[k, row, 0].item() == np.float32(steps[0][0])
                    assert windows.next_obs[k, row, 0].item() == np.float32(steps[-1][2])
                    assert windows.terminated[k, row].item() == steps[-1][3]


def test_windows_found_after_a_load_continue_with_the_next_add():
    """A window right after a load is found from the rows; the next add continues the newest episode."""
    saved = _buffer([(0, 1, 1, 0), (1, 2, 2, 0)])
    loaded = ReplayBuffer(10, 1, 1, "cpu", [0])
    loaded.load_state_dict(saved.state_dict())
    loaded.windows(torch.tensor([[0]]), 3)
    one = np.ones((1, 1), dtype=np.float32)
    loaded.add(one * 2, one * 0.5, one[:, 0] * 3, one * 3, one[:, 0] * 0)
    assert _alive(loaded.windows(torch.tensor([[0, 1]]), 3))[0].tolist() == [[1, 1, 1], [1, 1, 0]]


def _random_adds(buffers, steps, seed=4):
    """The same ``steps`` adds of 2 agents (episodes ending at random) to each buffer."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(2, 1))
    for _ in range(steps):
        next_obs, reward, end = rng.normal(size=(2, 1)), rng.normal(size=2), rng.random(2)
        for buffer in buffers:
            buffer.add(obs, obs * 0, reward, next_obs, (end < 0.2).astype(np.float64))
        obs = np.where((end < 0.4)[:, None], rng.normal(size=(2, 1)), next_obs)  # terminated, truncated or not


def test_window_table_off_the_cpu_copies_every_change_to_the_device():
    """Off the CPU the table's tensors are copies of the host table: each add and each fill reaches them (CPU clones
    stand in for the device here)."""
    buffer = ReplayBuffer(6, 1, 1, "cpu", [0, 1])
    _random_adds([buffer], 4)
    table = buffer._window_table(3)  # found from the rows
    table._on_host = False
    table.rewards, table.lengths, table.last_rows = (t.clone() for t in (table.rewards, table.lengths, table.last_rows))
    table.fill(buffer.split_rows(buffer.storage[:, :4]), torch.arange(4))
    _random_adds([buffer], 9, seed=5)  # through the wrap
    assert torch.equal(table.rewards, torch.from_numpy(table._rewards))
    assert torch.equal(table.lengths, torch.from_numpy(table._lengths))
    assert torch.equal(table.last_rows, torch.from_numpy(table._last_rows))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_windows_on_the_gpu_equal_those_on_the_cpu():
    cpu, gpu = ReplayBuffer(6, 1, 1, "cpu", [0, 1]), ReplayBuffer(6, 1, 1, "cuda", [0, 1])
    _random_adds([cpu, gpu], 3)
    starts = torch.tensor([[0, 1, 2], [2, 1, 0]])
    for buffer in (cpu, gpu):
        buffer.windows(starts.to(buffer.device), 3)  # found from the rows
    _random_adds([cpu, gpu], 9, seed=5)  # kept by add, through the wrap
    expected, found = cpu.windows(starts, 3), gpu.windows(starts.cuda(), 3)
    for a, b in zip(expected, found, strict=True):
        assert torch.equal(a, b.cpu())


def test_dynamic_capacity_drops_the_oldest_and_grows_back():
    buffer = _buffer([(i, 0, i + 1, 0) for i in range(100)], capacity=100, agents=2)
    buffer.drop_oldest(0, 10)
    assert buffer.agent_sizes() == [90, 100]
    draws = buffer.sample(5000)
    assert draws.obs[0].min().item() == 10 and draws.obs[1].min().item() == 0
    for i in range(100, 105):  # overwrite the 5 oldest physical rows, all dropped for agent 0
        buffer.add(np.full((2, 1), i, np.float32), np.zeros((2, 1)), np.zeros(2), np.full((2, 1), i + 1), np.zeros(2))
    assert buffer.agent_sizes() == [95, 100] and buffer.dropped == [5, 0]
    assert buffer.oldest(0, 3).obs[:, 0].tolist() == [10, 11, 12]  # the rows still dropped are never returned
    assert buffer.oldest(1, 2).obs[:, 0].tolist() == [5, 6]
    copy = ReplayBuffer(100, 1, 1, "cpu", [0, 1])
    copy.load_state_dict(buffer.state_dict())
    assert copy.agent_sizes() == [95, 100] and torch.equal(copy.sample(64).obs, buffer.sample(64).obs)


class _Shifted:
    """A policy whose deterministic action is the stored one (0.5) plus ``shift[k]`` (env units), per agent."""

    def __init__(self, shift):
        self.shift = torch.tensor(shift).view(-1, 1, 1)

    def act(self, obs, deterministic):
        return obs * 0 + 0.5 + self.shift


def test_capacity_rule_by_hand():
    low, high = torch.tensor([-2.0]), torch.tensor([2.0])
    # Shift 1.0 on a half-range of 2: (0.5)² / 2 = 0.125.
    assert policy_distance(torch.ones(1, 4, 1), torch.zeros(1, 4, 1), low, high).tolist() == [0.125]
    buffer = _buffer([(i, 0, i + 1, 0) for i in range(100)], capacity=100, agents=2)
    settings = DynamicCapacity(threshold=0.1, check_interval=1, min_size=60, drop_fraction=0.1, samples=32)
    sizes = []
    for _ in range(6):
        distances, after = adjust_capacity(buffer, _Shifted([1.0, 0.2]), settings, low, high)
        sizes.append(after)
    assert distances == pytest.approx([0.125, 0.005])  # agent 1 is close to its data: never dropped
    # 100 → 90 → 81 → 73 (floor of 10 %) → 66 → 60, and no drop once at or below min_size 60.
    assert sizes == [[90, 100], [81, 100], [73, 100], [66, 100], [60, 100], [60, 100]]


def _fit(tmp_path: Path, max_timesteps: int, ckpt_path: str | None = None):
    callbacks = [
        RLProgressReporter(print_episodes=False, print_evaluations=False),
        SparsityDistributionCallback(global_sparsity=0.8, distribution="ER"),
        DynamicSparsityCallback(update_period=40, growth="gradient", schedule="cosine", stop_step=250),
        ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True),
    ]
    data = {
        "max_timesteps": max_timesteps,
        "seeds": [1, 2],
        "n_step": 3,
        "n_step_delay": 100,
        "dynamic_buffer": DynamicCapacity(threshold=1e-4, check_interval=40, min_size=150, samples=32),
    }
    trainer = {"callbacks": callbacks, "enable_checkpointing": True, "plugins": [RunCheckpointIO()]}
    return short_fit(tmp_path, "td3", data=data, trainer=trainer, ckpt_path=ckpt_path)


@pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")
def test_rlx2_resume_is_bit_for_bit(tmp_path):
    """300 steps straight == 170 steps + a resumed fit to 300, with n-step windows, drops and RigL."""
    straight_trainer, straight, straight_dm = _fit(tmp_path / "straight", 300)
    _fit(tmp_path / "first", 170)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    _, resumed, resumed_dm = _fit(tmp_path / "second", 300, ckpt_path=str(last))
    assert straight_dm.buffer.dropped == resumed_dm.buffer.dropped
    assert torch.equal(straight_dm.buffer.storage, resumed_dm.buffer.storage)
    for key, value in straight.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.state_dict()[key]), key
    with open(Path(straight_trainer.logger.log_dir) / "metrics.csv") as f:
        sizes = [float(r["buffer/size/seed_1"]) for r in csv.DictReader(f) if r.get("buffer/size/seed_1")]
    # Checks at steps 40, 80, …, 280: 240 rows, less 10 % → 216, then +40 − 10 % each time, never below 150.
    assert len(sizes) == 7 and sizes[0] == 216
    assert all(size < 200 + step for size, step in zip(sizes, range(40, 300, 40), strict=True))


def test_actor_and_critics_get_their_own_sparsity(tmp_path):
    from lightning_sparse_rl.sparse import compute_layer_sparsity, weight_mask

    callbacks = [
        RLProgressReporter(print_episodes=False, print_evaluations=False),
        SparsityDistributionCallback(global_sparsity=0.8, critic_sparsity=0.5, distribution="ER"),
    ]
    _, module, _ = short_fit(tmp_path, "td3", data={"max_timesteps": 1}, trainer={"callbacks": callbacks})
    expected = {
        "actor": compute_layer_sparsity(0.8, [3, 32, 32, 1], [False, False, True], "ER"),
        "critic": compute_layer_sparsity(0.5, [4, 32, 32, 1], [False, False, True], "ER"),
    }
    for net in module.sparse_networks():
        for layer, count in zip(net.layers, expected[net.family].connections, strict=True):
            mask = weight_mask(layer)
            active = layer.in_features * layer.out_features if mask is None else int(mask[net.members[0]].sum())
            assert active == count, (net.name, count)


def test_rlx2_config_has_the_codes_settings():
    from lightning_sparse_rl.cli import build_cli

    cli = build_cli(["--config", str(Path(__file__).resolve().parents[1] / "configs/rlx2_td3.yaml")], run=False)
    dm = cli.datamodule
    assert (dm.schedule.n_step, dm.schedule.n_step_delay, dm.batch_size, dm.max_timesteps) == (
        3,
        300_000,
        256,
        3_000_000,
    )
    assert dm.dynamic_buffer == DynamicCapacity(0.2, 10_000, 100_000, 0.1, 2048)
    callbacks = {type(c).__name__: c for c in cli.trainer.callbacks}
    distribution, dynamic = callbacks["SparsityDistributionCallback"], callbacks["DynamicSparsityCallback"]
    assert (distribution.global_sparsity, distribution.critic_sparsity, distribution.distribution) == (0.9, 0.85, "ER")
    assert dynamic.growth.needs_gradient and dynamic.update_period == 10_000
    assert dynamic.schedule.drop_fraction(0) == 0.5 and dynamic.schedule.drop_fraction(2_975_000) == 0.0
    assert (cli.model.hparams.lr, cli.model.hparams.weight_decay) == (3e-4, 0.0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")
def test_rlx2_td3_learns_pendulum(tmp_path):
    """TD3 with 3-step targets after 2 000 updates, the dynamic buffer and 50 % sparse RigL nets learns Pendulum."""
    callbacks = [
        RLProgressReporter(print_episodes=False, print_evaluations=False),
        SparsityDistributionCallback(global_sparsity=0.5, distribution="ER", target_sparsity="shared"),
        DynamicSparsityCallback(
            drop_fraction=0.5, update_period=1000, growth="gradient", schedule="cosine", stop_step=8000
        ),
    ]
    data = {
        "start_timesteps": 1000,
        "eval_freq": 1000,
        "eval_episodes": 5,
        "batch_size": 128,
        "max_timesteps": 8000,
        "n_step": 3,
        "n_step_delay": 2000,
        "dynamic_buffer": DynamicCapacity(threshold=0.2, check_interval=1000, min_size=3000, samples=1024),
    }
    trainer, _, _ = short_fit(
        tmp_path, "td3", seed=0, data=data, model={"hidden_width": 64}, trainer={"callbacks": callbacks}
    )
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    returns = [float(r["eval/return"]) for r in rows if r["eval/return"]]
    assert returns[0] < -600 and max(returns) > -250 and returns[-1] > -350, returns
