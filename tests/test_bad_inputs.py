"""Every bad input is rejected before training starts, naming the value and what is allowed."""

from __future__ import annotations

import argparse
import re

import gymnasium as gym
import pytest
import yaml

from lightning_sparse_rl.cli import build_cli
from lightning_sparse_rl.cli.tutorial import main as tutorial_main

#: A tiny, valid ``lsrl fit`` run that each case breaks in one place.
BASE = {
    "seed_everything": 0,
    "model": {"class_path": "lightning_sparse_rl.SAC", "init_args": {"hidden_width": 16}},
    "data": {
        "env_id": "Pendulum-v1",
        "start_timesteps": 50,
        "max_timesteps": 20,
        "eval_freq": 20,
        "eval_episodes": 1,
        "batch_size": 16,
        "buffer_size": 1000,
    },
    "trainer": {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False},
}


def _sparsity(**init_args: object) -> dict:
    callback = {"class_path": "lightning_sparse_rl.callbacks.SparsityDistributionCallback", "init_args": init_args}
    return {"trainer": {"callbacks": [callback]}}


#: case → (changes to BASE, a regular expression the error must match)
CASES: dict[str, tuple[dict, str]] = {
    "unknown env id": ({"data": {"env_id": "HalfCheeta-v5"}}, r"HalfCheeta.*doesn't exist.*Did you mean.*HalfCheetah"),
    "unknown env version": ({"data": {"env_id": "Pendulum-v7"}}, r"v7.*Pendulum.*doesn't exist"),
    "mujoco-py id without a checked successor": (
        {"data": {"env_id": "HumanoidStandup-v2"}},
        r"HumanoidStandup-v2.*needs mujoco-py.*use HumanoidStandup-v5",
    ),
    "discrete actions": ({"data": {"env_id": "CartPole-v1"}}, r"CartPole-v1.*Discrete action space.*continuous Box"),
    "global sparsity 1": (_sparsity(global_sparsity=1.0), r"global_sparsity=1.0 must be in \[0, 1\)"),
    "negative global sparsity": (_sparsity(global_sparsity=-0.1), r"global_sparsity=-0.1 must be in \[0, 1\)"),
    "input layer sparsity 1": (
        _sparsity(input_layer_sparsity=1.0),
        r"input_layer_sparsity=1.0 must be -1.*or in \(0, 1\)",
    ),
    "impossible sparsity configuration": (
        _sparsity(global_sparsity=0.99),
        r"global_sparsity=0.99 .* is impossible for layer sizes \[3, 16, 16, 2\]: layer 1 would need density",
    ),
    "unknown distribution": (
        _sparsity(global_sparsity=0.5, distribution="gaussian"),
        r"Literal\['uniform', 'ER', 'new'\]\. Got value: gaussian",
    ),
    "fake_features 1": ({"data": {"fake_features": 1.0}}, r"fake_features=1.0 must be in \[0.0, 1.0\)"),
    "negative fake_features": ({"data": {"fake_features": -0.5}}, r"fake_features=-0.5 must be in \[0.0, 1.0\)"),
    "noise std 0": ({"data": {"fake_features": 0.5, "noise_std": 0.0}}, r"noise_std=0.0 must be > 0"),
    "negative noise std": ({"data": {"noise_std": -1.0}}, r"noise_std=-1.0 must be > 0"),
    "batch larger than buffer": ({"data": {"batch_size": 2000}}, r"batch_size=2000 is larger than buffer_size=1000"),
    "zero max_timesteps": ({"data": {"max_timesteps": 0}}, r"max_timesteps=0 must be > 0"),
    "negative eval_freq": ({"data": {"eval_freq": -5}}, r"eval_freq=-5 must be > 0"),
    "negative start_timesteps": ({"data": {"start_timesteps": -1}}, r"start_timesteps=-1 must be >= 0"),
    "zero buffer": ({"data": {"buffer_size": 0}}, r"buffer_size=0 must be > 0"),
    "zero updates per step": ({"data": {"updates_per_step": 0}}, r"updates_per_step=0 must be > 0"),
    "negative checkpoint period": ({"checkpoints": {"every_n_env_steps": -10}}, r"every_n_env_steps=-10 must be > 0"),
    "unknown algorithm": (
        {"model": {"class_path": "lightning_sparse_rl.PPO"}},
        r"Problem with given class_path 'lightning_sparse_rl\.PPO'|Import path lightning_sparse_rl\.PPO",
    ),
    "unknown optimizer": (
        {"model": {"init_args": {"optimizer": "adamw"}}},
        r"Literal\['adam', 'maskadam', 'sgd'\]\. Got value: adamw",
    ),
    "unknown noise distribution": (
        {"data": {"noise_distribution": "cauchy"}},
        r"Literal\['gaussian', 'uniform', 'marginals'\]\. Got value: cauchy",
    ),
    "unknown YAML key": ({"data": {"bogus_key": 1}}, r"bogus_key"),
    "unknown compile mode": ({"model": {"init_args": {"compile_mode": "turbo"}}}, r"turbo.*reduce-overhead"),
}


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) and key in base else value
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_rejected_before_training_with_a_clear_message(case, tmp_path, capsys):
    """``lsrl fit --config bad.yaml`` fails before any training step, naming the bad value."""
    changes, message = CASES[case]
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_merge(BASE, changes)))
    with pytest.raises((ValueError, argparse.ArgumentError, gym.error.Error)) as error:
        build_cli(["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}"])
    output = capsys.readouterr()
    text = f"{error.value}\n{output.err}"
    assert "Filling the replay buffer" not in output.out + output.err  # stopped before any env step
    assert re.search(message, text, re.DOTALL), text[-2000:]


def test_the_valid_base_config_trains(tmp_path):
    """The table's starting point is valid (so each case fails for its own reason)."""
    config = tmp_path / "ok.yaml"
    config.write_text(yaml.safe_dump(BASE))
    cli = build_cli(["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}"])
    assert cli.datamodule.train_steps == 20


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--policy", "PPO"], r"invalid choice: 'PPO'.*ANF-SAC"),
        (["--sparsity_distribution_method", "gaussian"], r"invalid choice: 'gaussian'.*uniform"),
        (["--env", "CartPole-v1", "--wandb_mode", "disabled"], r"Discrete action space"),
    ],
)
def test_tutorial_front_rejects_unknown_names(flags, message, capsys):
    """The tutorial's flags: unknown policy, distribution or a discrete env are rejected with the choices."""
    with pytest.raises((SystemExit, ValueError)) as error:
        tutorial_main(flags)
    text = f"{error.value}\n{capsys.readouterr().err}"
    assert re.search(message, text, re.DOTALL), text[-2000:]
