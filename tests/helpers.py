"""Helpers of the tests: real, short Lightning fits on cheap envs, and the check of a one-line CLI error."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from lightning_sparse_rl import SAC, TD3, EnvDataModule
from lightning_sparse_rl.callbacks import RLProgressReporter

ALGORITHMS = {"sac": SAC, "td3": TD3}
#: The repository's root folder.
REPO = Path(__file__).resolve().parents[1]


def lsrl_command(*args: str) -> list[str]:
    """The argv that runs ``lsrl ARGS`` in a process of its own, with this Python (as sweep trials start it)."""
    return [sys.executable, "-m", "lightning_sparse_rl.cli", *args]


def short_run_args(
    *,
    env_id: str = "Pendulum-v1",
    start_timesteps: int = 100,
    max_timesteps: int = 100,
    eval_freq: int | None = None,
    eval_episodes: int = 1,
    hidden_width: int = 16,
    **data: object,
) -> list[str]:
    """The ``lsrl fit`` flags that make a run short: the env, its warm-up, training and evaluation steps, a small net.

    ``eval_freq`` defaults to ``max_timesteps`` (one evaluation, at the end); ``data`` adds ``--data.KEY=VALUE``
    flags (e.g. ``batch_size=32``). Put them after ``--config`` or ``--model=CLASS``, which they refine.
    """
    data = {
        "env_id": env_id,
        "start_timesteps": start_timesteps,
        "max_timesteps": max_timesteps,
        "eval_freq": max_timesteps if eval_freq is None else eval_freq,
        "eval_episodes": eval_episodes,
        **data,
    }
    return [*(f"--data.{key}={value}" for key, value in data.items()), f"--model.hidden_width={hidden_width}"]


def short_fit(
    tmp_path: Path,
    algorithm: str = "sac",
    *,
    seed: int = 0,
    data: dict | None = None,
    model: dict | None = None,
    trainer: dict | None = None,
    ckpt_path: str | None = None,
) -> tuple[L.Trainer, L.LightningModule, EnvDataModule]:
    """Fit ``algorithm`` on Pendulum-v1 (small nets) with a real Trainer and a CSV log in ``tmp_path``."""
    L.seed_everything(seed, verbose=False)
    data_kwargs = dict(
        env_id="Pendulum-v1",
        seed=seed,
        start_timesteps=200,
        max_timesteps=300,
        eval_freq=150,
        eval_episodes=1,
        batch_size=32,
        buffer_size=10_000,
    )
    data_kwargs.update(data or {})
    dm = EnvDataModule(**data_kwargs)
    model_kwargs = dict(hidden_width=32, agent_seeds=dm.seeds)  # as lsrl fit links them
    model_kwargs.update(model or {})
    module = ALGORITHMS[algorithm](dm.env_spec, **model_kwargs)
    trainer_kwargs = dict(
        max_epochs=-1,
        num_sanity_val_steps=0,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[RLProgressReporter(print_episodes=False, print_evaluations=False)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        log_every_n_steps=50,
    )
    trainer_kwargs.update(trainer or {})
    fitter = L.Trainer(**trainer_kwargs)
    fitter.fit(module, dm, ckpt_path=ckpt_path)
    return fitter, module, dm


def one_line_error(capsys: pytest.CaptureFixture, command, argv: list[str]) -> str:
    """Run a command-line ``command(argv)`` that must fail with one ``error: ...`` line, status 2, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        command(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def find_callback(callbacks: list[L.Callback], kind: type[L.Callback]) -> L.Callback:
    """The one callback of type ``kind`` in ``callbacks`` (a trainer's or a list given to it)."""
    (found,) = [callback for callback in callbacks if isinstance(callback, kind)]
    return found
