"""The Python API trains as ``lsrl fit`` does: ``make_trainer`` and the CLI build the same trainer."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl import SAC, EnvDataModule, make_trainer
from lightning_sparse_rl.cli import build_cli
from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO


def _kinds(trainer: L.Trainer) -> list[str]:
    """The trainer's callbacks of this library by type, without the CLI's own config saver."""
    ours = [
        type(callback) for callback in trainer.callbacks if type(callback).__module__.startswith("lightning_sparse_rl")
    ]
    return [kind.__name__ for kind in ours if kind.__name__ != "SaveRunConfig"]


def test_make_trainer_builds_what_lsrl_fit_builds(tmp_path):
    """Same always-on callbacks in the same order, checkpoint I/O, loop settings and logger type."""
    cli = build_cli(
        ["--model=lightning_sparse_rl.SAC", "--data.env_id=Pendulum-v1", f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    )
    trainer = make_trainer(save_dir=tmp_path)
    assert _kinds(trainer) == _kinds(cli.trainer) == ["RLProgressReporter", "EvaluationResults", "RunCheckpoints"]
    for built in (trainer, cli.trainer):
        assert isinstance(built.strategy.checkpoint_io, RunCheckpointIO)
        assert (built.max_epochs, built.num_sanity_val_steps) == (-1, 0)
    assert type(trainer.logger) is type(cli.trainer.logger)


def test_three_lines_train_and_write_the_run_files(tmp_path):
    """The README's example on Pendulum: a run folder with evaluations, a resumable last.ckpt and best.ckpt."""
    L.seed_everything(0, verbose=False)
    data = EnvDataModule("Pendulum-v1", seed=0, start_timesteps=100, max_timesteps=200, eval_freq=100, eval_episodes=1)
    best = ModelCheckpoint(monitor="eval/return", mode="max", filename="best")
    make_trainer(save_dir=tmp_path, callbacks=[best], enable_progress_bar=False).fit(
        SAC(data.env_spec, hidden_width=16), data
    )
    run_dir = tmp_path / "run" / "version_0"
    assert (run_dir / "evaluations.csv").read_text().splitlines()[1:] != []
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert (
        RunCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["EnvDataModule"]["train_steps"] == 200
    )
