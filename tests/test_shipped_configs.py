"""Shipped configs found by name (``lsrl fit --config sac``, ``lsrl sweep smoke``), ``lsrl configs``, ``--version``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO, one_line_error

from lightning_sparse_rl import TD3, __version__, shipped_configs
from lightning_sparse_rl.cli import build_cli, main, with_shipped_configs
from lightning_sparse_rl.sweep.spec import expand_trials, load_sweep_file


def test_the_shipped_configs_are_the_repositorys_configs_folder():
    assert shipped_configs.configs_folder() == REPO / "configs"  # a clone (and an editable install) reads it there
    names = set(shipped_configs.shipped("config"))
    assert {"sac", "td3", "ds_td3", "anf_sac", "prune_td3", "rlx2_td3", "quickstart"} <= names
    assert names == {path.stem for path in (REPO / "configs").glob("*.yaml")}
    assert set(shipped_configs.shipped("sweep")) == {path.stem for path in (REPO / "configs" / "sweeps").glob("*.yaml")}


def test_a_config_name_becomes_its_shipped_file_and_a_path_stays_as_given(tmp_path, monkeypatch):
    sac = str(REPO / "configs" / "sac.yaml")
    assert with_shipped_configs(["fit", "--config", "sac", "--config=td3.yaml"]) == [
        "fit",
        "--config",
        sac,
        f"--config={REPO / 'configs' / 'td3.yaml'}",
    ]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sac").write_text("seed_everything: 3\n")  # a file of that name in the working folder wins
    assert with_shipped_configs(["fit", "--config", "sac", "--config", "nope"]) == [
        "fit",
        "--config",
        "sac",
        "--config",
        "nope",
    ]


def test_lsrl_fit_config_by_name_builds_the_shipped_config():
    cli = build_cli(with_shipped_configs(["--config", "ds_td3", "--seed_everything", "7"]), run=False)
    assert isinstance(cli.model, TD3) and cli.datamodule.seed == 7
    assert [type(callback).__name__ for callback in cli.trainer.callbacks][:2] == [
        "SparsityDistributionCallback",
        "DynamicSparsityCallback",
    ]


def test_an_unknown_config_name_is_the_missing_file_error_as_before(capsys):
    error = one_line_error(capsys, main, ["fit", "--config", "no_such_config"])
    assert error == "error: config file no_such_config does not exist"


def test_shipped_sweep_files_name_their_base_configs_by_name_and_work_when_copied(tmp_path, capsys):
    main(["configs", "copy", "ds_td3_vs_td3", str(tmp_path)])
    copy = tmp_path / "ds_td3_vs_td3.yaml"
    assert copy.read_text() == (REPO / "configs" / "sweeps" / "ds_td3_vs_td3.yaml").read_text()
    assert f"Wrote {copy}" in capsys.readouterr().out
    trials = expand_trials(load_sweep_file(copy))  # far from the repository, its base configs are the shipped ones
    assert [trial.name for trial in trials] == ["Hopper-v5__config=ds_td3", "Hopper-v5__config=td3"]
    assert [Path(trial.config_file) for trial in trials] == [
        REPO / "configs" / "ds_td3.yaml",
        REPO / "configs" / "td3.yaml",
    ]


def test_a_sweep_base_config_that_is_neither_a_file_nor_shipped_is_one_line(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"config": "nope", "seeds": 1}))
    error = one_line_error(capsys, main, ["sweep", str(sweep)])
    assert error == (
        f"error: sweep file {sweep}: config file nope does not exist (paths are relative to the sweep file) and is "
        "not a shipped config (lsrl configs lists them)"
    )


def test_lsrl_configs_lists_every_shipped_file_with_its_summary(capsys):
    main(["configs"])
    out = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in out if line.startswith("  ")]
    assert listed == [*shipped_configs.shipped("config"), *shipped_configs.shipped("sweep")]
    (sac,) = [line for line in out if line.startswith("  sac ")]
    assert sac.split(None, 1)[1] == shipped_configs.description(REPO / "configs" / "sac.yaml")
    assert sac.split(None, 1)[1].startswith("Dense SAC with the original ANF/DS code's defaults")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["configs", "copy", "nope"],
            "error: lsrl configs: no shipped config or sweep file named 'nope': see lsrl configs",
        ),
        (["configs", "list", "sac"], "error: lsrl configs: lsrl configs list takes no name ('sac'); copy one with: "),
        (["configs", "remove"], "error: lsrl configs: argument action: invalid choice: 'remove'"),
    ],
)
def test_lsrl_configs_refuses_bad_input_in_one_line(argv, message, capsys):
    assert one_line_error(capsys, main, argv).startswith(message)


def test_lsrl_configs_copy_never_overwrites_without_force(tmp_path, capsys):
    dest = tmp_path / "mine.yaml"
    dest.write_text("edited\n")
    error = one_line_error(capsys, main, ["configs", "copy", "sac", str(dest)])
    assert error == f"error: lsrl configs: {dest} exists: give another DEST, or --force to overwrite it"
    assert dest.read_text() == "edited\n"
    main(["configs", "copy", "sac", str(dest), "--force"])
    assert dest.read_text() == (REPO / "configs" / "sac.yaml").read_text()


def test_lsrl_version(capsys):
    main(["--version"])
    assert capsys.readouterr().out == f"lsrl (lightning-sparse-rl) {__version__}\n"
