"""Watching agents and reading results (issue 5): policy files, the viewer, run files and plots."""

import csv
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from helpers import short_fit
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_sparse_rl.callbacks import (
    EvaluationResults,
    InputConnectivityCallback,
    RLProgressReporter,
    SparsityDistributionCallback,
)
from lightning_sparse_rl.cli import main as lsrl
from lightning_sparse_rl.data.episodes import play_episodes
from lightning_sparse_rl.policy import export_policy
from lightning_sparse_rl.policy_files import load_policy

pytestmark = pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")


def _hopper_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [RLProgressReporter(False, False), checkpoint]
    short_fit(
        tmp_path,
        data={"env_id": "Hopper-v5", "start_timesteps": 100, "max_timesteps": 100, "eval_freq": 100},
        trainer={"callbacks": callbacks, "enable_checkpointing": True},
    )
    return tmp_path / "ckpt" / "last.ckpt"


def test_viewer_records_a_video_headless_from_a_checkpoint(tmp_path, capsys):
    path = _hopper_checkpoint(tmp_path)
    loaded = load_policy(path)
    (record,) = play_episodes(
        loaded.env_spec, loaded.act_numpy, episodes=1, seed=3, render_mode="rgb_array", width=64, height=48
    )
    assert len(record.frames) == record.length > 0
    assert all(frame.shape == (48, 64, 3) and frame.dtype == np.uint8 for frame in record.frames)
    assert all(frame.std() > 5 for frame in record.frames)  # a scene, not a blank image

    for suffix in (".gif", ".mp4"):
        video = tmp_path / f"hopper{suffix}"
        lsrl(["view", str(path), "--record", str(video), "--seed", "3", "--width", "64", "--height", "48"])
        out = capsys.readouterr().out
        assert f"Episode 0: return {record.episode_return:.1f}, {record.length} steps" in out
        frames = imageio.mimread(video, memtest=False)
        assert len(frames) == record.length
        assert np.asarray(frames[-1]).std() > 5


def test_viewer_rejects_a_bad_video_name_and_compares_with_random_actions(tmp_path, capsys, monkeypatch):
    path = _hopper_checkpoint(tmp_path)
    with pytest.raises(SystemExit):
        lsrl(["view", str(path), "--record", str(tmp_path / "video.avi")])
    assert "must end in one of ('.mp4', '.gif')" in capsys.readouterr().err
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SystemExit):
        lsrl(["view", str(path)])
    assert "no display to open a window on: record a video instead" in capsys.readouterr().err
    policy = load_policy(path)
    first, again = (play_episodes(policy.env_spec, policy.act_numpy, 2, seed=5, random_actions=True) for _ in range(2))
    assert [r.episode_return for r in first] == [r.episode_return for r in again]  # seeded
    assert len(first) == 2 and all(r.frames == [] for r in first)


@pytest.mark.parametrize(("algorithm", "noise_mode"), [("sac", "network"), ("td3", "network"), ("sac", "env")])
def test_exported_policy_reproduces_the_checkpoint_actions(tmp_path, algorithm, noise_mode):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [RLProgressReporter(False, False), SparsityDistributionCallback(global_sparsity=0.5), checkpoint]
    _, module, dm = short_fit(
        tmp_path,
        algorithm,
        data={"fake_features": 0.5, "noise_mode": noise_mode},
        trainer={"callbacks": callbacks, "enable_checkpointing": True},
    )
    module.input_features.set_permutation(0, torch.tensor([4, 2, 0, 5, 1, 3]))
    obs = torch.randn(16, dm.env_spec.observation_dim)
    exported = export_policy(module, tmp_path / "policy.pt")
    expected = module.act(obs[None], deterministic=True)[0]
    assert torch.equal(exported.act(obs), expected)  # same weights, permutation and noise generator state
    from_file = load_policy(tmp_path / "policy.pt")
    assert torch.equal(from_file.input_features.permutation, torch.tensor([[4, 2, 0, 5, 1, 3]]))
    assert from_file.env_spec == dm.env_spec and from_file.algorithm == algorithm.upper()
    assert from_file.seed == 0 and torch.equal(from_file.act(obs), expected)
    # Masks are baked in: the exported input layer has exactly the mask's connections.
    layer = module.sparse_networks()[0].layers[0]
    assert int(from_file.actor.sparse_layers()[0].weight.count_nonzero()) == int(torch.count_nonzero(layer.weight))
    # The same agent straight from the checkpoint (saved at the end of the fit, before the permutation).
    from_checkpoint = load_policy(tmp_path / "ckpt" / "last.ckpt")
    assert not from_checkpoint.input_features.permuted
    assert (tmp_path / "policy.pt").stat().st_size < 100_000
    records = play_episodes(from_file.env_spec, from_file.act_numpy, episodes=1, seed=0)
    assert records[0].length == 200


def test_run_directory_files_and_plots_from_real_runs(tmp_path, capsys):
    runs = []
    for seed in (0, 1):
        results = EvaluationResults()
        callbacks = [
            RLProgressReporter(False, False),
            SparsityDistributionCallback(input_layer_sparsity=0.8),
            InputConnectivityCallback(),
            results,
        ]
        trainer, _, _ = short_fit(
            tmp_path,
            seed=seed,
            data={"fake_features": 0.5},
            trainer={"callbacks": callbacks, "logger": CSVLogger(tmp_path / "runs", name="anf-sac")},
        )
        run = Path(trainer.log_dir)
        runs.append(run)
        columns = list(csv.DictReader(open(run / "evaluations.csv")))
        assert [int(row["step"]) for row in columns] == [150, 300]
        returns = [float(row["return"]) for row in columns]
        assert np.load(run / "evaluations.npy").tolist() == pytest.approx(returns)
        assert returns == pytest.approx([row[2] for row in results.evaluations])
        assert {int(row["seed"]) for row in columns} == {seed}
        sparsity = list(csv.DictReader(open(run / "sparsity.csv")))
        assert len(sparsity) == 2 and float(sparsity[0]["sparsity/actor/layer1"]) == pytest.approx(0.8, abs=0.01)
    assert runs[0].parent == runs[1].parent and runs[0] != runs[1]
    out = tmp_path / "plots"
    lsrl(["plot", *map(str, runs), "--out", str(out), "--layers", "17,256,256,6", "--global-sparsity", "0.9"])
    printed = capsys.readouterr().out
    for name in ("learning_curves", "connectivity", "sparsity_distribution"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
        assert f"{name}.png" in printed
    with pytest.raises(SystemExit):
        lsrl(["plot", str(tmp_path)])  # not a run directory


def test_mean_confidence_band_matches_the_student_t_interval():
    from lightning_sparse_rl.callbacks.progress import mean_confidence_band

    mean, half = mean_confidence_band(np.array([1.0, 3.0, 5.0]))
    assert mean == 3.0
    assert half == pytest.approx(4.303 * 2.0 / np.sqrt(3), rel=1e-4)  # t(0.975, 2) = 4.303 from a printed table
    assert mean_confidence_band(np.array([7.0])) == (7.0, 0.0)


def test_evaluation_videos_go_to_the_run_directory_and_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lightning_sparse_rl.callbacks import EvaluationVideo

    video = EvaluationVideo(every_n_evaluations=2, width=64, height=48)
    trainer, _, _ = short_fit(
        tmp_path,
        data={"env_id": "Hopper-v5", "start_timesteps": 100, "max_timesteps": 300, "eval_freq": 100},
        trainer={"callbacks": [RLProgressReporter(False, False), video], "logger": TensorBoardLogger(tmp_path)},
    )
    run = Path(trainer.log_dir)
    assert sorted(p.name for p in (run / "videos").iterdir()) == ["eval_step200.mp4"]  # evaluations 2 (not 1, 3)
    frames = imageio.mimread(run / "videos" / "eval_step200.mp4", memtest=False)
    assert len(frames) > 0 and np.asarray(frames[0]).shape == (48, 64, 3)
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    (image,) = events.Images("eval/video")
    assert image.step == 200 and image.encoded_image_string[:6] == b"GIF89a" and image.width == 64
    assert video.state_dict() == {"evaluations": 3}
