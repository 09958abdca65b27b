"""Exact resume, safe checkpoints, stop signals and non-finite losses."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import lsrl_command, short_fit, short_run_args
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl import SAC
from lightning_sparse_rl.callbacks import (
    DynamicSparsityCallback,
    RLProgressReporter,
    RunCheckpoints,
    SparsityDistributionCallback,
)
from lightning_sparse_rl.persistence.checkpoint_io import CheckpointDamaged, RunCheckpointIO
from lightning_sparse_rl.stop_request import StopRequested

#: name → (algorithm, data overrides, sparse?)
SETTINGS = {
    "dense SAC, network noise": ("sac", {"fake_features": 0.5}, False),
    "sparse DST TD3, env noise": ("td3", {"fake_features": 0.5, "noise_mode": "env"}, True),
    "sparse DST SAC, network noise": ("sac", {"fake_features": 0.5}, True),
    "population of 3, sparse DST SAC, network noise": ("sac", {"fake_features": 0.5, "seeds": [3, 4, 5]}, True),
}


def _fit(tmp_path: Path, name: str, max_timesteps: int, ckpt_path: str | None = None):
    algorithm, data, sparse = SETTINGS[name]
    callbacks: list[L.Callback] = [
        RLProgressReporter(print_episodes=False, print_evaluations=False),
        ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True),
    ]
    if sparse:
        callbacks += [SparsityDistributionCallback(global_sparsity=0.8), DynamicSparsityCallback(update_period=40)]
    trainer = {"callbacks": callbacks, "enable_checkpointing": True, "plugins": [RunCheckpointIO()]}
    data = {**data, "max_timesteps": max_timesteps, "eval_freq": 150}
    return short_fit(tmp_path, algorithm, data=data, trainer=trainer, ckpt_path=ckpt_path)


def _optimizer_tensors(trainer: L.Trainer) -> list[torch.Tensor]:
    return [
        value
        for optimizer in trainer.optimizers
        for state in optimizer.state_dict()["state"].values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]


@pytest.mark.parametrize("name", [*list(SETTINGS)[:2], list(SETTINGS)[3]])
def test_n_steps_equal_n_over_2_then_resume_for_n_over_2(tmp_path, name):
    """300 steps in one go == 150 steps, checkpoint, a new process-like fit from it for 150 more: bit for bit."""
    straight_trainer, straight, straight_dm = _fit(tmp_path / "straight", name, 300)
    _fit(tmp_path / "first", name, 150)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    side_files = list(last.parent.glob("last.buffer-*.pt"))
    assert len(side_files) == 1  # the replay buffer lives next to the checkpoint
    resumed_trainer, resumed, resumed_dm = _fit(tmp_path / "second", name, 300, ckpt_path=str(last))

    assert resumed.gradient_steps == straight.gradient_steps == 300
    assert resumed_dm.train_steps == straight_dm.train_steps == 300
    assert resumed_dm.runner.env_steps == straight_dm.runner.env_steps
    assert resumed_dm.runner.episodes == straight_dm.runner.episodes
    straight_state, resumed_state = straight.state_dict(), resumed.state_dict()
    assert straight_state.keys() == resumed_state.keys()
    tensors = [k for k, v in straight_state.items() if isinstance(v, torch.Tensor)]
    differences = {k: (straight_state[k].float() - resumed_state[k].float()).abs().max().item() for k in tensors}
    assert max(differences.values()) == 0.0, {k: v for k, v in differences.items() if v}
    others = [k for k in straight_state if k not in tensors]  # the noise generators' states
    assert all(str(straight_state[k]) == str(resumed_state[k]) for k in others)
    for a, b in zip(_optimizer_tensors(straight_trainer), _optimizer_tensors(resumed_trainer), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(resumed_dm.buffer.storage, straight_dm.buffer.storage)


def test_a_td3_checkpoint_of_version_0_1_0_resumes(tmp_path):
    """0.1.0 kept a copy of TD3's action bounds in the module's state; such a checkpoint still resumes."""
    _fit(tmp_path / "first", "sparse DST TD3, env noise", 150)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    assert "action_low" not in checkpoint["state_dict"]
    checkpoint["state_dict"]["action_low"] = torch.tensor([-2.0])
    checkpoint["state_dict"]["action_high"] = torch.tensor([2.0])
    torch.save(checkpoint, last.with_name("legacy.ckpt"))  # next to the replay buffer file it refers to
    _, resumed, resumed_dm = _fit(
        tmp_path / "second", "sparse DST TD3, env noise", 300, str(last.with_name("legacy.ckpt"))
    )
    assert resumed.gradient_steps == resumed_dm.train_steps == 300
    assert resumed.actor.action_low.tolist() == [-2.0] and resumed.actor.action_high.tolist() == [2.0]


class _SignalAt(L.Callback):
    """Delivers a stop signal to ``RunCheckpoints`` after training step ``step`` (as ``kill -TERM`` would)."""

    def __init__(self, step: int, target: RunCheckpoints) -> None:
        self.step, self.target = step, target

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch.train_step == self.step:
            self.target._handle(signal.SIGTERM, None)


def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path):
    """Stopped by a signal after step 100 (mid-epoch), then resumed: the same parameters as 300 steps straight."""
    name = "sparse DST SAC, network noise"
    _, straight, straight_dm = _fit(tmp_path / "straight", name, 300)
    stopper = RunCheckpoints()
    algorithm, data, _ = SETTINGS[name]
    callbacks = [
        _SignalAt(100, stopper),
        SparsityDistributionCallback(global_sparsity=0.8),
        DynamicSparsityCallback(update_period=40),
        stopper,  # after the callbacks that change the state at a step's end (lsrl fit orders it so)
        ModelCheckpoint(dirpath=tmp_path / "stopped" / "checkpoints", save_last=True),
    ]
    trainer = {"callbacks": callbacks, "enable_checkpointing": True, "plugins": [RunCheckpointIO()]}
    with pytest.raises(StopRequested, match="stopped by SIGTERM during training") as stop:
        short_fit(
            tmp_path / "stopped", algorithm, data={**data, "max_timesteps": 300, "eval_freq": 150}, trainer=trainer
        )
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert stop.value.checkpoint == str(last)
    saved = RunCheckpointIO().load_checkpoint(last)
    assert saved["EnvDataModule"]["train_steps"] == 100 and saved["gradient_steps"] == 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, resumed, resumed_dm = _fit(tmp_path / "resumed", name, 300, ckpt_path=str(last))
    # Lightning would call a mid-epoch resume unreliable if the train loader were not stateful.
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert resumed_dm.train_steps == 300 and resumed_dm.runner.episodes == straight_dm.runner.episodes
    for key, value in straight.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Ant-v5"])
def test_a_mujoco_env_snapshot_continues_the_same_trajectory(env_id):
    """Snapshot mid-episode, restore into a fresh env (through a checkpoint's safe encoding): identical steps."""
    import io

    import numpy as np

    from lightning_sparse_rl.data.env_state import env_state, restore_env_state
    from lightning_sparse_rl.data.envs import make_env
    from lightning_sparse_rl.persistence.state_encoding import decode, encode

    env = make_env(env_id)
    env.action_space.seed(0)
    env.reset(seed=1)
    for _ in range(37):
        env.step(env.action_space.sample())
    buffer = io.BytesIO()
    torch.save(encode(env_state(env)), buffer)
    buffer.seek(0)
    copy = make_env(env_id)
    copy.reset(seed=5)
    restore_env_state(copy, decode(torch.load(buffer, weights_only=True)))
    for _ in range(100):
        action = env.action_space.sample()
        assert np.array_equal(action, copy.action_space.sample())
        a, b = env.step(action), copy.step(action)
        assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]


def test_a_truncated_or_corrupted_checkpoint_is_reported(tmp_path):
    """Damaged checkpoint and side files are detected with a message naming the file."""
    _fit(tmp_path, "dense SAC, network noise", 150)
    last = tmp_path / "checkpoints" / "last.ckpt"
    io = RunCheckpointIO()
    assert io.load_checkpoint(last)["EnvDataModule"]["replay_buffer"]["rows"].shape[:2] == (1, 350)  # 200 + 150

    side = next(last.parent.glob("last.buffer-*.pt"))
    data = side.read_bytes()
    side.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointDamaged, match=r"replay buffer file .*last\.buffer-.* is truncated or corrupted"):
        io.load_checkpoint(last)
    side.unlink()
    with pytest.raises(FileNotFoundError, match=r"replay buffer file .* is missing"):
        io.load_checkpoint(last)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointDamaged, match=r"checkpoint .*truncated\.ckpt is truncated or corrupted"):
        io.load_checkpoint(truncated)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint readable and no stray files."""
    _fit(tmp_path, "dense SAC, network noise", 150)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    checkpoint = RunCheckpointIO().load_checkpoint(last)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        RunCheckpointIO().save_checkpoint(checkpoint, last)
    monkeypatch.undo()
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []
    assert RunCheckpointIO().load_checkpoint(last)["EnvDataModule"]["train_steps"] == 150


class _DivergingSAC(SAC):
    """SAC whose critic loss becomes NaN at gradient step 40."""

    def critic_loss(self, batch):
        loss = super().critic_loss(batch)
        return loss * float("nan") if self.gradient_steps == 40 else loss


def test_a_non_finite_loss_stops_training_with_a_checkpoint(tmp_path, monkeypatch):
    """NaN in the critic loss: training stops, naming the network and step, with the state saved."""
    from helpers import ALGORITHMS

    monkeypatch.setitem(ALGORITHMS, "sac", _DivergingSAC)
    trainer = {"callbacks": [ModelCheckpoint(dirpath=tmp_path / "checkpoints")], "enable_checkpointing": True}
    with pytest.raises(FloatingPointError, match=r"the critic loss is nan at training step 41 \(gradient step 41\)"):
        short_fit(tmp_path, "sac", trainer=trainer)
    state = torch.load(tmp_path / "checkpoints" / "last_finite.ckpt", weights_only=True)
    assert state["gradient_steps"] == 40
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_sigterm_stops_with_a_checkpoint_and_the_run_resumes(tmp_path):
    """``kill -TERM`` during training: a checkpoint, a clean exit; ``--ckpt_path last`` finishes the run."""
    common = [
        "--model=lightning_sparse_rl.SAC",
        *short_run_args(
            start_timesteps=200, max_timesteps=800, eval_freq=400, hidden_width=32, batch_size=32, buffer_size=5000
        ),
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.logger.name=run",
        "--trainer.enable_progress_bar=false",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        lsrl_command("fit", *common), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # wait for the second training episode (training is under way)
        lines.append(line)
        if "Episode Num: 2 " in line:
            process.send_signal(signal.SIGTERM)
            break
    else:
        pytest.fail(f"lsrl fit ended (status {process.wait()}) before its second training episode:\n{''.join(lines)}")
    output = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=120) == 0, output
    run_dir = tmp_path / "run" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = f"Resume with: lsrl fit --config {run_dir / 'config.yaml'} --ckpt_path last"
    assert "Received SIGTERM" in output and f"Stopped by SIGTERM during training; wrote {last}. {resume}" in output
    stopped_at = RunCheckpointIO().load_checkpoint(last)["EnvDataModule"]["train_steps"]
    assert 600 <= stopped_at < 800

    time.sleep(0.1)
    done = subprocess.run(
        lsrl_command("fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last"),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Tip:" not in output + done.stdout + done.stderr  # Lightning's adverts for its hosted services
    steps = [int(float(row.split(",")[0])) for row in (run_dir / "evaluations.csv").read_text().splitlines()[1:]]
    assert steps == [400, 800]  # the resumed run continued in the same run directory, to the end
    assert not (tmp_path / "run" / "version_1").exists()
