import argparse
import json
import logging
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, one_line_error, short_run_args

from lightning_sparse_rl import SAC, TD3
from lightning_sparse_rl.cli import build_cli
from lightning_sparse_rl.cli.tutorial import build_parser, main, to_lsrl_args


def _config(args):
    cli = build_cli(args, run=False)
    config = cli.config.as_dict()
    config.pop("config", None)
    return cli, config


def test_command_line_overrides_yaml():
    cli, _ = _config(["--config", str(REPO / "configs/sac.yaml"), "--data.env_id", "Hopper-v5", "--model.lr", "3e-4"])
    assert isinstance(cli.model, SAC)
    assert cli.model.hparams.lr == 3e-4 and cli.datamodule.env_id == "Hopper-v5"
    assert cli.model.env_spec.observation_dim == 11  # linked from the DataModule
    assert cli.datamodule.seed == 42  # linked from seed_everything


def test_td3_yaml_builds_td3():
    cli, _ = _config(["--config", str(REPO / "configs/td3.yaml"), "--seed_everything", "7"])
    assert isinstance(cli.model, TD3) and cli.model.hparams.policy_freq == 2 and cli.datamodule.seed == 7


def test_unknown_yaml_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: lightning_sparse_rl.SAC\n  init_args:\n    learning_rate: 0.1\n")
    with pytest.raises(argparse.ArgumentError, match="learning_rate"):
        build_cli(["--config", str(bad)], run=False)


def _short_run_args(tmp_path, config="configs/sac.yaml"):
    logger = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path), "name": "r"}}
    ]
    return [
        "fit", "--config", str(REPO / config), *short_run_args(),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", json.dumps(logger),
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip


def test_resolved_config_is_saved_next_to_the_run_and_round_trips(tmp_path):
    cli = build_cli(_short_run_args(tmp_path))
    run_dir = Path(cli.trainer.log_dir)
    saved = run_dir / "config.yaml"
    assert saved.exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert yaml.safe_load(saved.read_text())["model"]["init_args"]["hidden_width"] == 16
    reloaded = SAC.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # torch's weights_only default
    assert reloaded.env_spec == cli.model.env_spec
    for a, b in zip(reloaded.parameters(), cli.model.parameters(), strict=True):
        assert torch.equal(a, b)
    again = build_cli(["fit", "--config", str(saved)])  # trains again from the saved config alone
    first_config, again_config = (c.config["fit"].clone() for c in (cli, again))
    for config in (first_config, again_config):
        del config["config"]
    assert again_config == first_config
    assert Path(again.trainer.log_dir) != run_dir  # a new version directory, nothing overwritten


def test_tutorial_front_maps_to_the_same_config_as_the_yaml():
    for policy, config in [("SAC", "configs/sac.yaml"), ("TD3", "configs/td3.yaml")]:
        front = to_lsrl_args(
            build_parser().parse_args(["--policy", policy, "--env", "HalfCheetah-v5", "--wandb_mode", "disabled"])
        )
        _, from_front = _config(front[1:])
        _, from_yaml = _config(["--config", str(REPO / config)])
        assert from_front == from_yaml, policy


def test_tutorial_flags_reach_the_objects():
    args = build_parser().parse_args(
        ["--policy", "TD3", "--env", "Hopper-v3", "--seed", "3", "--lr", "3e-4", "--discount", "0.98",
         "--policy_noise", "0.3", "--num_hid_layers", "3", "--num_hid_neurons", "64", "--batch_size", "256",
         "--start_timesteps", "1e3", "--max_timesteps", "2e4", "--eval_freq", "1e3", "--wandb_mode", "disabled",
         "--not_save_model", "--not_print_comments"]
    )  # fmt: skip
    cli, _ = _config(to_lsrl_args(args)[1:])
    hp = cli.model.hparams
    assert isinstance(cli.model, TD3) and (hp.lr, hp.discount, hp.policy_noise) == (3e-4, 0.98, 0.3)
    assert (hp.hidden_layers, hp.hidden_width) == (3, 64)
    dm = cli.datamodule
    assert (dm.env_id, dm.seed, dm.batch_size, dm.start_timesteps, dm.max_timesteps) == (
        "Hopper-v5",
        3,
        256,
        1000,
        20000,
    )
    assert cli.trainer.checkpoint_callback is None


def test_tutorial_seeds_flag_trains_a_population():
    args = build_parser().parse_args(
        ["--policy", "SAC", "--env", "Pendulum-v1", "--seeds", "2-4", "--wandb_mode", "disabled"]
    )
    translated = to_lsrl_args(args)
    assert "--seeds=2-4" in translated
    cli, _ = _config(translated[1:])
    assert cli.datamodule.seeds == [2, 3, 4] and cli.model.seeds == (2, 3, 4)


def test_tutorial_front_rejects_later_features_clearly(capsys):
    error = one_line_error(capsys, main, ["--sac_type", "Deterministic", "--wandb_mode", "disabled"])
    assert "--sac_type Deterministic: the deterministic SAC variant is not implemented yet" in error


def test_tutorial_load_model_resumes_from_a_checkpoint():
    args = build_parser().parse_args(["--load_model", "runs/sac/version_0/checkpoints/last.ckpt"])
    assert to_lsrl_args(args)[-1] == "--ckpt_path=runs/sac/version_0/checkpoints/last.ckpt"
    with pytest.raises(ValueError, match="--load_model default: give the checkpoint"):
        to_lsrl_args(build_parser().parse_args(["--load_model", "default"]))


def test_tutorial_noise_command_maps_to_the_noise_yaml():
    for policy, config in [("ANF-SAC", "anf_sac_noise90"), ("SAC", "sac_noise90")]:
        flags = ["--input_layer_sparsity", "0.8", "--fake_features", "0.9", "--policy", policy]
        args = build_parser().parse_args([*flags, "--env", "HalfCheetah-v5", "--wandb_mode", "disabled"])
        if policy == "ANF-SAC":
            args.optimizer = "maskadam"  # the paper's optimizer, used by the YAML
        cli, from_front = _config(to_lsrl_args(args)[1:])
        _, from_yaml = _config(["--config", str(REPO / "configs" / f"{config}.yaml")])
        from_yaml["trainer"]["logger"][0]["init_args"]["name"] = policy.lower()
        if policy == "ANF-SAC":  # the original's --ann_earlyStopTopologyChange 1e9 means "never"
            from_front["trainer"]["callbacks"][1]["init_args"]["stop_step"] = None
        assert from_front == from_yaml, policy
        assert cli.model.actor.sparse_layers()[0].in_features == 170  # 17 real + 153 noise
        assert cli.datamodule.env_spec.observation_dim == 17  # the buffer stores the real features only


def test_tutorial_noise_and_permutation_flags_reach_the_objects(capsys):
    flags = ["--policy", "ANF-TD3", "--input_layer_sparsity", "0.8", "--fake_features", "0.5"]
    flags += ["--fake_noise_std", "2", "--load_noise_distribution", "real_feats_distr_HalfCheetah.npy"]
    flags += ["--adjust_env_period", "5e5", "--empty_buffer_on_env_change", "--refill_mode", "current"]
    flags += ["--refill_timesteps", "1e4", "--noise_mode", "env"]
    args = build_parser().parse_args([*flags, "--env", "Pendulum-v1", "--wandb_mode", "disabled"])
    cli, _ = _config(to_lsrl_args(args)[1:])
    dm = cli.datamodule
    assert (dm.hparams.fake_features, dm.hparams.noise_std, dm.noise_mode) == (0.5, 2.0, "env")
    assert dm.noise.distribution == "marginals" and dm.env_spec.observation_dim == 6
    callbacks = {type(c).__name__: c for c in cli.trainer.callbacks}
    permutation = callbacks["FeaturePermutationCallback"]
    assert (permutation.period, permutation.empty_buffer, permutation.refill_timesteps) == (500_000, True, 10_000)
    assert permutation.refill_mode == "current" and "InputConnectivityCallback" in callbacks


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fake_features", "1.0"], r"--fake_features=1.0 must be in \[0.0, 1.0\)"),
        (["--fake_features", "-0.5"], r"--fake_features=-0.5 must be in \[0.0, 1.0\)"),
        (["--fake_noise_std", "-1"], r"--fake_noise_std=-1.0 must be > 0"),
        (["--fake_noise_std", "0"], r"--fake_noise_std=0.0 must be > 0"),
        (["--refill_timesteps", "0.5"], r"--refill_timesteps=0.5 must be >= 1"),
        (["--adjust_env_period", "0.5"], r"--adjust_env_period=0.5 must be >= 1 step, or <= 0 for never"),
    ],
)
def test_tutorial_front_rejects_bad_noise_flags_early(flags, message, capsys):
    argv = ["--policy", "ANF-SAC", *flags, "--wandb_mode", "disabled", "--max_timesteps", "1", "--env", "bad-env"]
    assert re.search(message, one_line_error(capsys, main, argv))


def test_transfer_yaml_permutes_after_one_million_steps():
    cli, _ = _config(["--config", str(REPO / "configs/anf_sac_transfer.yaml")])
    callbacks = {type(c).__name__: c for c in cli.trainer.callbacks}
    assert callbacks["FeaturePermutationCallback"].period == 1_000_000 and cli.datamodule.max_timesteps == 2_000_000
    assert cli.datamodule.hparams.fake_features == 0.9


@pytest.mark.parametrize(
    ("config", "algorithm", "dynamic", "optimizer", "global_sparsity", "s_in"),
    [
        ("static_sac", SAC, False, "adam", 0.5, -1.0),
        ("static_td3", TD3, False, "adam", 0.5, -1.0),
        ("ds_sac", SAC, True, "adam", 0.5, -1.0),
        ("ds_td3", TD3, True, "adam", 0.5, -1.0),
        ("anf_sac", SAC, True, "maskadam", 0.0, 0.8),
        ("anf_td3", TD3, True, "maskadam", 0.0, 0.8),
    ],
)
def test_sparse_yaml_configs_build_their_callbacks(config, algorithm, dynamic, optimizer, global_sparsity, s_in):
    path = REPO / "configs" / f"{config}.yaml"
    assert path.read_text().startswith("# ") and ("IJCAI" in path.read_text() or "AAMAS" in path.read_text())
    cli, _ = _config(["--config", str(path)])
    assert isinstance(cli.model, algorithm) and cli.model.hparams.optimizer == optimizer
    callbacks = {type(c).__name__: c for c in cli.trainer.callbacks}
    distribution = callbacks["SparsityDistributionCallback"]
    assert (distribution.global_sparsity, distribution.input_layer_sparsity) == (global_sparsity, s_in)
    assert ("DynamicSparsityCallback" in callbacks) == dynamic


@pytest.mark.parametrize(("config", "algorithm"), [("prune_sac", SAC), ("prune_td3", TD3)])
def test_prune_configs_build_gradual_pruning_with_graessers_schedule(config, algorithm):
    path = REPO / "configs" / f"{config}.yaml"
    assert path.read_text().startswith("# ") and "ICML 2022" in path.read_text()
    cli, _ = _config(["--config", str(path)])
    assert isinstance(cli.model, algorithm) and cli.model.hparams.optimizer == "maskadam"
    callbacks = {type(c).__name__: c for c in cli.trainer.callbacks}
    assert "DynamicSparsityCallback" not in callbacks and "SparsityDistributionCallback" not in callbacks
    gmp = callbacks["GradualPruningCallback"]
    assert (gmp.global_sparsity, gmp.distribution) == (0.9, "ER")
    assert (gmp.schedule.start_step, gmp.schedule.end_step, gmp.schedule.period) == (200_000, 800_000, 1000)


def _front_config(flags):
    args = build_parser().parse_args([*flags, "--env", "HalfCheetah-v5", "--wandb_mode", "disabled"])
    cli, _ = _config(to_lsrl_args(args)[1:])
    return cli, {type(c).__name__: c for c in cli.trainer.callbacks}


def test_tutorial_policies_map_to_the_sparsity_callbacks():
    cli, callbacks = _front_config(["--policy", "ANF-SAC", "--global_sparsity", "0.5", "--optimizer", "maskadam"])
    assert callbacks["SparsityDistributionCallback"].global_sparsity == 0.5
    dynamic = callbacks["DynamicSparsityCallback"]
    assert (dynamic.drop_fraction, dynamic.update_period, dynamic.new_weight_init) == (0.05, 1000, "zero")
    assert cli.model.hparams.optimizer == "maskadam"
    flags = ["--policy", "Static-TD3", "--sparsity_distribution_method", "ER", "--global_sparsity", "0.9"]
    cli, callbacks = _front_config([*flags, "--optimizer", "maskadam"])
    assert isinstance(cli.model, TD3) and cli.model.hparams.optimizer == "adam"  # as the original: Static uses Adam
    assert callbacks["SparsityDistributionCallback"].distribution == "ER"
    assert "DynamicSparsityCallback" not in callbacks
    _, callbacks = _front_config(["--policy", "SAC", "--input_layer_sparsity", "0.8"])
    assert "SparsityDistributionCallback" not in callbacks  # dense policies ignore sparsity flags


def test_tutorial_prune_policies_map_to_gradual_pruning():
    flags = ["--policy", "Prune-TD3", "--global_sparsity", "0.9", "--optimizer", "maskadam", "--max_timesteps", "1e5"]
    cli, callbacks = _front_config(flags)
    assert isinstance(cli.model, TD3) and cli.model.hparams.optimizer == "maskadam"
    gmp = callbacks["GradualPruningCallback"]
    assert gmp.global_sparsity == 0.9 and "DynamicSparsityCallback" not in callbacks
    assert (gmp.schedule.start_step, gmp.schedule.end_step, gmp.schedule.period) == (20_000, 80_000, 1000)
    flags = ["--policy", "Prune-SAC", "--prune_start_step", "10", "--prune_end_step", "5e4", "--prune_period", "250"]
    _, callbacks = _front_config([*flags, "--global_sparsity", "0.5", "--updates_per_step", "2"])
    schedule = callbacks["GradualPruningCallback"].schedule
    assert (schedule.start_step, schedule.end_step, schedule.period) == (10, 50_000, 250)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--global_sparsity", "1.5"], r"global_sparsity=1.5 must be in \[0, 1\)"),
        (["--input_layer_sparsity", "2"], r"input_layer_sparsity=2.0 must be -1"),
        (["--ann_setZeta", "0"], r"--ann_setZeta=0.0 must be in \(0.0, 1.0\)"),
        (["--policy", "Prune-SAC", "--prune_start_step", "9", "--prune_end_step", "9"], "--prune_start_step=9 and"),
        (["--policy", "Prune-SAC", "--prune_period", "0"], r"--prune_period=0.0 must be"),
    ],
)
def test_tutorial_front_rejects_bad_sparsity_flags_early(flags, message, capsys):
    argv = ["--policy", "ANF-SAC", *flags, "--wandb_mode", "disabled", "--max_timesteps", "1", "--env", "bad-env"]
    assert re.search(message, one_line_error(capsys, main, argv))


def _tutorial_short_run(max_timesteps: int = 100) -> list[str]:
    """The tutorial front's flags of a short run: Pendulum-v1, 100 random steps, one evaluation at the end."""
    return [
        "--env", "Pendulum-v1", "--start_timesteps", "100", "--max_timesteps", str(max_timesteps),
        "--eval_freq", str(max_timesteps), "--eval_episodes", "1",
    ]  # fmt: skip


def test_tutorial_sparse_runs_print_their_layer_tables(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    lightning_logger = logging.getLogger("lightning.pytorch")  # does not propagate to the root logger
    lightning_logger.addHandler(caplog.handler)
    monkeypatch.setattr(lightning_logger, "level", logging.INFO)
    common = ["--policy", "ANF-SAC", "--wandb_mode", "disabled", "--not_save_model"]
    outputs = []
    for extra in ("--sparsity_distribution_method ER --global_sparsity 0.9", "--input_layer_sparsity 0.8"):
        caplog.clear()
        main([*_tutorial_short_run(), *extra.split(), *common])
        outputs.append(caplog.text)
    lightning_logger.removeHandler(caplog.handler)
    er, anf = outputs
    assert re.search(r"Layer 1\s+\| Layer 2\s+\| Layer 3", er)
    assert "actor [actor]: 3-256-256-2, ER, global sparsity requested 0.9, achieved 0.89999" in er
    # ANF: input layer 80 % sparse (153 of 3·256 connections), the rest dense; the real global sparsity is printed.
    assert re.search(r"sparsity\s+\| 80\.1%\s+\| 0\.0%\s+\| 0\.0%", anf)
    assert "so the global sparsity is 0.00920" in anf  # 1 − (153 + 65536 + 512) / 66816


def test_tutorial_prune_run_prints_its_schedule(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    lightning_logger = logging.getLogger("lightning.pytorch")  # does not propagate to the root logger
    lightning_logger.addHandler(caplog.handler)
    monkeypatch.setattr(lightning_logger, "level", logging.INFO)
    prune = "--policy Prune-SAC --global_sparsity 0.9 --wandb_mode disabled --not_save_model"
    main([*_tutorial_short_run(), *prune.split()])
    lightning_logger.removeHandler(caplog.handler)
    # 100 updates: pruning from 20 to 80 at quarters 20, 35, 50, 65, 80; uniform 90 % over the two sparse layers.
    assert "actor: gradual pruning schedule" in caplog.text
    assert re.search(r"gradient step \| 20\s+\| 35\s+\| 50\s+\| 65\s+\| 80", caplog.text)
    assert re.search(r"layer 2\s+\| 0\.0%\s+\| 52\.\d%.*\| 9\d\.\d%", caplog.text)


def test_tutorial_front_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["--policy", "ANF-SAC", *_tutorial_short_run(200), "--num_hid_neurons", "16", "--wandb_mode", "disabled"])
    out = capsys.readouterr().out
    assert "this run is dense SAC" in out and "Equivalent command: lsrl fit" in out
    assert (tmp_path / "runs" / "anf-sac" / "version_0" / "metrics.csv").exists()


def _run_with_logger(tmp_path, logger):
    args = _short_run_args(tmp_path)
    args[args.index("--trainer.logger") + 1] = json.dumps(logger)
    return build_cli(args)


def test_tensorboard_logger_is_selectable(tmp_path):
    logger = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": str(tmp_path)}}
    cli = _run_with_logger(tmp_path, logger)
    assert list(Path(cli.trainer.log_dir).glob("events.out.tfevents.*"))


def test_wandb_offline_writes_a_local_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    save_dir = tmp_path / "w"
    logger = {
        "class_path": "lightning_sparse_rl.loggers.WandbLogger",
        "init_args": {"mode": "offline", "save_dir": str(save_dir)},
    }
    cli = _run_with_logger(tmp_path, logger)
    cli.trainer.logger.experiment.finish()
    assert list((save_dir / "wandb").glob("offline-run-*"))


def test_wandb_project_entity_name_and_tags_reach_the_logger(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = ["--wandb_mode", "offline", "--wandb_project", "anf", "--wandb_entity", "lab"]
    flags += ["--wandb_run_name", "cheetah-1", "--wandb_tags", "noise90", "anf"]
    args = build_parser().parse_args([*flags, "--env", "Pendulum-v1"])
    cli, _ = _config(to_lsrl_args(args)[1:])
    wandb_logger = next(lg for lg in cli.trainer.loggers if type(lg).__name__ == "WandbLogger")
    init = wandb_logger._wandb_init
    assert (init["project"], init["entity"], init["name"], init["tags"], init["mode"]) == (
        "anf", "lab", "cheetah-1", ["noise90", "anf"], "offline"
    )  # fmt: skip
