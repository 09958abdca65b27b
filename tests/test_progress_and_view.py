"""The reporter's best evaluation and running time across a resume; watching agents on any Gymnasium env."""

import logging
import os
import re
import time
import zipfile

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from helpers import short_fit
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image, ImageSequence

from lightning_sparse_rl.callbacks import RLProgressReporter
from lightning_sparse_rl.cli import main as lsrl
from lightning_sparse_rl.data.episodes import accepts_render_size
from lightning_sparse_rl.policy import export_policy
from lightning_sparse_rl.policy_files import load_policy

EVALUATION = re.compile(r"Evaluation over \d+ episode\(s\): (-?\d+\.\d+)")
BEST = re.compile(r"Best evaluation return: (-?\d+\.\d+) \(after (\d+) training steps\)")
RUNNING = re.compile(r"Total running time (\d+):(\d\d):(\d\d(?:\.\d+)?)")
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")


def _fit_with_checkpoints(tmp_path, caplog, max_timesteps, ckpt_path=None, trainer=None):
    """A short Pendulum fit (evaluations every 150 steps, printed) and the reporter's lines it logged."""
    callbacks = [RLProgressReporter(print_episodes=False), ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        short_fit(
            tmp_path,
            data={"max_timesteps": max_timesteps, "eval_freq": 150},
            trainer={"callbacks": callbacks, "enable_checkpointing": True, **(trainer or {})},
            ckpt_path=ckpt_path,
        )
    return caplog.text


def _evaluations(text):
    return [float(value) for value in EVALUATION.findall(text)]


def _running_seconds(text):
    ((hours, minutes, seconds),) = RUNNING.findall(text)
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def _reporter_state(checkpoint):
    return torch.load(checkpoint, weights_only=True)["callbacks"]["RLProgressReporter"]


def test_a_resumed_run_reports_the_best_evaluation_and_the_time_of_the_whole_run(tmp_path, caplog):
    first = _fit_with_checkpoints(tmp_path / "first", caplog, 300)
    checkpoint = tmp_path / "first" / "ckpt" / "last.ckpt"
    saved = _reporter_state(checkpoint)
    before = _evaluations(first)
    assert len(before) == 2 and saved["best_return"] == pytest.approx(max(before), abs=1e-3)
    assert saved["best_step"] == 150 * (1 + before.index(max(before)))
    assert 0 < saved["running_s"] <= _running_seconds(first) + 1

    start = time.perf_counter()
    resumed = _fit_with_checkpoints(tmp_path / "second", caplog, 450, ckpt_path=str(checkpoint))
    wall_s = time.perf_counter() - start
    after = _evaluations(resumed)
    assert len(after) == 1  # at 450 steps
    steps = {value: 150 * (i + 1) for i, value in reversed(list(enumerate(before + after)))}
    ((best, step),) = BEST.findall(resumed)
    assert float(best) == max(before + after) and int(step) == steps[max(before + after)]
    assert saved["running_s"] <= _running_seconds(resumed) <= saved["running_s"] + wall_s

    # A resume that trains no more (Lightning's max_steps=0): the checkpoint's best and time, not the uptime.
    idle = _fit_with_checkpoints(tmp_path / "idle", caplog, 300, ckpt_path=str(checkpoint), trainer={"max_steps": 0})
    assert _evaluations(idle) == []
    ((best, step),) = BEST.findall(idle)
    assert float(best) == max(before) and int(step) == saved["best_step"]
    assert saved["running_s"] <= _running_seconds(idle) < saved["running_s"] + 60


def test_reporter_state_round_trip_continues_the_clock():
    reporter = RLProgressReporter()
    assert reporter.state_dict() == {"best_return": None, "best_step": None, "running_s": 0.0}
    reporter.load_state_dict({"best_return": -150.5, "best_step": 3000, "running_s": 7200.0})
    restored = RLProgressReporter()
    restored.load_state_dict(reporter.state_dict())
    assert restored.state_dict() == {"best_return": -150.5, "best_step": 3000, "running_s": 7200.0}
    restored.on_fit_start(None, None)
    assert 7200.0 <= restored.running_seconds() < 7200.0 + 60  # this fit's time is added to the saved time
    restored.teardown(None, None, "fit")
    stopped = restored.running_seconds()
    assert restored.running_seconds() == stopped  # no idle time after the fit


def test_view_records_a_gif_of_a_classic_control_policy(tmp_path, capsys):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [RLProgressReporter(False, False), checkpoint]
    _, module, _ = short_fit(
        tmp_path,
        data={"start_timesteps": 100, "max_timesteps": 100, "eval_freq": 100},
        trainer={"callbacks": callbacks, "enable_checkpointing": True},
    )
    export_policy(module, tmp_path / "policy.pt")
    lsrl(["export", str(tmp_path / "ckpt" / "last.ckpt"), str(tmp_path / "exported.pt")])
    obs = torch.randn(8, 3)
    assert torch.equal(load_policy(tmp_path / "exported.pt").act(obs), load_policy(tmp_path / "policy.pt").act(obs))

    video = tmp_path / "pendulum.gif"
    lsrl(["view", str(tmp_path / "policy.pt"), "--record", str(video), "--width", "64", "--height", "48"])
    out = capsys.readouterr().out
    assert "Pendulum-v1 renders at its own size 500x500; --width/--height apply to MuJoCo envs" in out
    assert "Episode 0: return" in out and "200 steps" in out
    frames = imageio.mimread(video, memtest=False)
    assert np.asarray(frames[0]).shape[:2] == (500, 500)
    assert np.asarray(frames[-1]).std() > 5  # a scene, not a blank image
    # 200 steps at Pendulum's 30 frames/s, a GIF delay of 30 ms each (GIF delays are whole centiseconds). Pillow
    # merges identical consecutive frames (a still pendulum) into one longer frame: the play time must match.
    with Image.open(video) as gif:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    assert len(durations) == len(frames) <= 200 and sum(durations) == 200 * 30


def test_view_scores_the_shipped_agent_without_a_display(capsys, monkeypatch):
    """``lsrl view --no-render`` needs no display and no video: each return, then mean ± sd (RL Zoo's --no-render)."""
    from lightning_sparse_rl.data.episodes import play_episodes

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    agent = "agents/halfcheetah-v5_ds-sac/policy.pt"
    lsrl(["view", agent, "--no-render", "--episodes", "2", "--seed", "0"])
    out = capsys.readouterr().out
    policy = load_policy(agent)
    returns = [record.episode_return for record in play_episodes(policy.env_spec, policy.act_numpy, 2, 0)]
    assert f"Episode 0: return {returns[0]:.1f}, 1000 steps" in out and f"Episode 1: return {returns[1]:.1f}" in out
    assert f"Return over 2 episodes: {np.mean(returns):.1f} ± {np.std(returns, ddof=1):.1f} (mean ± sd)" in out


def test_only_envs_that_take_a_size_get_one():
    assert not accepts_render_size("Pendulum-v1")
    assert not accepts_render_size("gymnasium.envs.classic_control:MountainCarContinuous-v0")
    assert accepts_render_size("HalfCheetah-v5") and accepts_render_size("Hopper-v5")
    assert not accepts_render_size("Pendulum")  # unversioned: not in the registry as such


def _text(path):
    path.write_text("hello, not a policy\n")


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _zip_of_other_files(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a torch file")


def _torch_module(path):
    torch.save(torch.nn.Linear(2, 2), path)  # refused by weights_only


def _torch_tensor(path):
    torch.save(torch.ones(3), path)


def _torch_dict(path):
    torch.save({"weights": torch.ones(3)}, path)


def _policy_without_weights(path):
    torch.save({"format": 1, "algorithm": "SAC"}, path)


@pytest.mark.parametrize(
    "write",
    [_text, _random_bytes, _zip_of_other_files, _torch_module, _torch_tensor, _torch_dict, _policy_without_weights],
)
def test_load_policy_rejects_a_file_that_is_no_policy_or_checkpoint(tmp_path, write):
    path = tmp_path / "agent.pt"
    write(path)
    message = "is neither an exported policy (.pt of lsrl export) nor a checkpoint (.ckpt of lsrl fit)"
    with pytest.raises(ValueError, match=re.escape(f"{path} {message}")):
        load_policy(path)


def test_load_policy_names_a_missing_file(tmp_path):
    for path in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
            load_policy(os.fspath(path))
