"""``lsrl sweep``: sweep files, their trials, and real sweeps on a local Ray instance (no mocks)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, lsrl_command

from lightning_sparse_rl.persistence.run_files import read_csv_columns
from lightning_sparse_rl.sweep.spec import expand_trials, load_sweep_file, trial_config
from lightning_sparse_rl.validation import UserInputError

SMOKE = REPO / "configs" / "sweeps" / "smoke.yaml"
SAC_TRIAL, TD3_TRIAL = "Pendulum-v1__model=SAC", "Pendulum-v1__model=TD3"
#: The tests that use the smoke sweep run in one pytest-xdist worker (``--dist loadgroup``), so it runs once.
SMOKE_GROUP = pytest.mark.xdist_group("smoke_sweep")


def _write(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _lsrl_process(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``lsrl ARGS`` as a user does, in a process of its own, from the repository's root; its output captured."""
    return subprocess.run(lsrl_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _evaluations(run_dir: Path) -> list[tuple[int, int, float]]:
    columns = read_csv_columns(run_dir / "evaluations.csv")
    return list(zip(columns["step"].astype(int), columns["seed"].astype(int), columns["return"], strict=True))


def test_a_grid_list_is_the_union_of_its_grids_and_names_every_trial(tmp_path):
    sweep = _write(
        tmp_path / "sparsity.yaml",
        {
            "seeds": "1-3",
            "environments": ["Hopper-v5", "Walker2d-v5"],
            "grid": [
                {"config": [str(REPO / "configs/sac.yaml")]},
                {
                    "config": [str(REPO / "configs/ds_sac.yaml")],
                    "trainer.callbacks.SparsityDistributionCallback.global_sparsity": [0.5, 0.9],
                },
            ],
            "set": {"data.max_timesteps": 1000, "model.lr": 0.0003},
        },
    )
    trials = expand_trials(load_sweep_file(sweep))
    assert [t.name for t in trials] == [
        "Hopper-v5__config=sac",
        "Walker2d-v5__config=sac",
        "Hopper-v5__config=ds_sac,global_sparsity=0.5",
        "Walker2d-v5__config=ds_sac,global_sparsity=0.5",
        "Hopper-v5__config=ds_sac,global_sparsity=0.9",
        "Walker2d-v5__config=ds_sac,global_sparsity=0.9",
    ]
    last = trials[-1]
    assert last.configuration == "config=ds_sac,global_sparsity=0.9" and last.env_id == "Walker2d-v5"
    assert last.seeds == [1, 2, 3]
    assert last.fit_args == [
        "--seeds=1,2,3",
        "--data.env_id=Walker2d-v5",
        "--data.max_timesteps=1000",
        "--model.lr=0.0003",
    ]
    config = trial_config(last, tmp_path / "trial")
    (distribution,) = [
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("SparsityDistributionCallback")
    ]
    assert distribution["init_args"]["global_sparsity"] == 0.9
    assert distribution["init_args"]["distribution"] == "ER"  # the base config's other arguments stay
    (logger,) = config["trainer"]["logger"]
    assert logger["init_args"] | {} == {
        **logger["init_args"],
        "save_dir": str(tmp_path / "trial"),
        "name": "",
        "version": 0,
    }
    assert config["trainer"]["enable_progress_bar"] is False


def test_every_trial_logs_and_checkpoints_in_its_own_folder(tmp_path):
    """Whatever the base config's loggers and checkpoint folder, a trial's run folder is TRIAL_DIR/version_0."""
    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": "/elsewhere"}},
        {"class_path": "my_package.Checkpoint", "init_args": {"x": 0}},
    ]
    wandb = {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"project": "p"}}
    base = _write(
        tmp_path / "base.yaml",
        {"data": {"env_id": "Pendulum-v1"}, "trainer": {"logger": [wandb], "callbacks": callbacks}},
    )
    sweep = _write(
        tmp_path / "s.yaml", {"config": str(base), "seeds": 1, "grid": {"trainer.callbacks.Checkpoint.x": [1]}}
    )
    (trial,) = expand_trials(load_sweep_file(sweep))
    config = trial_config(trial, tmp_path / "t")
    csv, kept = config["trainer"]["logger"]
    assert csv == {
        "class_path": "lightning_sparse_rl.loggers.CSVLogger",
        "init_args": {"save_dir": str(tmp_path / "t"), "name": "", "version": 0},
    }
    assert kept == wandb  # the base config's other loggers stay, after it
    checkpoint, own = config["trainer"]["callbacks"]
    assert checkpoint["init_args"] == {"dirpath": str(tmp_path / "t" / "version_0" / "checkpoints")}
    assert own["init_args"] == {"x": 1}  # the class name matches exactly: ModelCheckpoint is not Checkpoint
    base.write_text(yaml.safe_dump({"trainer": {"logger": False, "callbacks": callbacks}}))
    assert [logger["class_path"] for logger in trial_config(trial, tmp_path / "t")["trainer"]["logger"]] == [
        "lightning_sparse_rl.loggers.CSVLogger"
    ]


def test_sweeps_and_reports_load_neither_lightning_nor_torch():
    code = (
        "import sys, lightning_sparse_rl.sweep.engine, lightning_sparse_rl.sweep.trial\n"
        "import lightning_sparse_rl.report.build\n"
        "print([m for m in ('lightning', 'torch', 'gymnasium') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"  # a Ray worker running a trial holds no torch (its lsrl fit process does)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"seeds": "1-2", "grid": {"model.lr": [0.1]}, "typo": 1}, "unknown key(s) typo"),
        ({"config": "missing.yaml", "seeds": "1-2"}, "config file missing.yaml does not exist"),
        ({"config": "SAC", "seeds": "3-1"}, "seeds='3-1' must be a range"),
        ({"config": "SAC", "seeds": 1, "grid": {"model.lr": [0.1]}, "set": {"model.lr": 0.2}}, "model.lr: in both"),
        ({"config": "SAC", "seeds": 1, "grid": {"model.lr": []}}, "grid.model.lr: [] gives no value"),
        ({"config": "SAC", "seeds": 1, "set": {"trainer.logger": False}}, "trainer.logger: a sweep sets this itself"),
        ({"config": "SAC", "seeds": 1, "grid": {"seed_everything": [1, 2]}}, "seed_everything: a sweep sets this"),
        ({"config": "SAC", "seeds": 1, "resources": {"cpus_per_trial": "two"}}, "resources.cpus_per_trial='two' must"),
        ({"config": "SAC", "seeds": 1, "resources": {"cpu": 2}}, "resources: {'cpu': 2}; allowed keys"),
    ],
)
def test_a_malformed_sweep_file_is_one_clear_error(tmp_path, content, message):
    if content.get("config") == "SAC":
        content["config"] = str(REPO / "configs/sac.yaml")
    with pytest.raises(UserInputError, match=f"sweep file .*: .*{re.escape(message)}"):
        expand_trials(load_sweep_file(_write(tmp_path / "bad.yaml", content)))


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"data.no_such_key": [1]}, "error: trial Pendulum-v1__no_such_key=1: .*no_such_key"),
        ({"data.batch_size": ["many"]}, "error: trial Pendulum-v1__batch_size=many: data.batch_size: .*many"),
        (
            {"trainer.callbacks.DynamicSparsityCallback.drop_fraction": [0.1]},
            "error: trainer.callbacks.DynamicSparsityCallback.drop_fraction: .*sac.yaml has no callback "
            "DynamicSparsityCallback",
        ),
    ],
)
def test_a_bad_grid_key_or_value_is_rejected_before_ray_starts(tmp_path, grid, message):
    sweep = _write(
        tmp_path / "bad.yaml",
        {"config": str(REPO / "configs/sac.yaml"), "seeds": "1-2", "environments": ["Pendulum-v1"], "grid": grid},
    )
    result = _lsrl_process("sweep", str(sweep), "--dir", str(tmp_path / "sweep"), timeout=120)
    assert result.returncode == 2, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and re.match(message, errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    assert "Ray" not in result.stdout  # no Ray instance was started
    assert not (tmp_path / "sweep").exists()


def test_a_missing_ray_or_an_unreachable_cluster_is_one_line(tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    command = lsrl_command("sweep", str(SMOKE), "--dir", str(tmp_path / "a"))
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: lsrl sweep needs Ray Tune (ray is missing): pip install -e '.[sweep]' (scripts/setup.sh does)"
    )
    result = _lsrl_process("sweep", str(SMOKE), "--dir", str(tmp_path / "b"), "--address", "127.0.0.1:9", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: cannot reach a Ray cluster at 127.0.0.1:9: Connection refused"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--cpus", "2", "--address", "127.0.0.1:9"), "--cpus 2 sizes the local Ray instance: a cluster (--address)"),
        (("--cpus", "0"), "--cpus 0 must be at least the CPUs of one trial (1)"),
    ],
)
def test_cpus_sizes_only_the_local_instance_and_fits_a_trial(tmp_path, options, message):
    result = _lsrl_process("sweep", str(SMOKE), "--dir", str(tmp_path / "a"), *options, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: lsrl sweep: {message}"), result.stderr
    assert not (tmp_path / "a").exists()


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """The smoke sweep (SAC and TD3 on Pendulum, seeds 1-2, 600 steps), run once on a local Ray instance.

    Session-scoped: its tests run in one pytest-xdist worker (``SMOKE_GROUP``), but possibly between other modules'.
    """
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "smoke"
    result = _lsrl_process("sweep", str(SMOKE), "--dir", str(sweep_dir))
    return sweep_dir, result


@SMOKE_GROUP
def test_the_smoke_sweep_trains_every_trial_as_a_population(smoke_sweep):
    sweep_dir, result = smoke_sweep
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 of 2 trials finished" in result.stdout
    assert "Pendulum-v1__model=SAC  TERMINATED            600/600" in result.stdout  # the live table's last state
    saved = json.loads((sweep_dir / "trials.json").read_text())
    assert [trial["name"] for trial in saved["trials"]] == [SAC_TRIAL, TD3_TRIAL]
    assert {trial["max_timesteps"] for trial in saved["trials"]} == {600}
    for name, algorithm in ((SAC_TRIAL, "SAC"), (TD3_TRIAL, "TD3")):
        run_dir = sweep_dir / "trials" / name / "version_0"
        steps_seeds = [(step, seed) for step, seed, _ in _evaluations(run_dir)]
        assert steps_seeds == [(s, seed) for s in (200, 400, 600) for seed in (1, 2)]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["class_path"] == f"lightning_sparse_rl.{algorithm}"
        assert config["data"]["env_id"] == "Pendulum-v1" and config["seeds"] == "1,2"
        assert config["model"]["init_args"]["hidden_width"] == 32
        assert (run_dir / "checkpoints" / "last.ckpt").exists()
        assert (sweep_dir / "trials" / name / "fit.log").read_text().count("$ lsrl fit") == 1


@SMOKE_GROUP
def test_the_report_of_the_smoke_sweep_has_a_row_per_configuration(smoke_sweep):
    sweep_dir, _ = smoke_sweep
    result = _lsrl_process(
        "report", str(sweep_dir), "--reps", "1000", "--curve-reps", "200", "--steps", "400", timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = (sweep_dir / "report" / "report.md").read_text()
    assert "## Pendulum-v1" in report
    assert "at 600 training steps (the last step every run reached)" in report
    assert "at 400 training steps (chosen)" in report
    for configuration in ("model=SAC", "model=TD3"):
        returns = [
            r for step, _, r in _evaluations(sweep_dir / "trials" / f"Pendulum-v1__{configuration}" / "version_0")
        ]
        mean = np.mean(returns[-2:])  # the two agents at step 600
        assert f"| {configuration} | 2 | {mean:.0f} [" in report
    assert "| model=SAC | model=TD3 | " in report  # probability of improvement
    content = json.loads((sweep_dir / "report" / "report.json").read_text())
    assert content["environments"]["Pendulum-v1"]["final_step"] == 600
    for figure in ("sample_efficiency", "performance_profile", "probability_of_improvement"):
        assert (sweep_dir / "report" / f"{figure}_Pendulum-v1.png").stat().st_size > 10_000


@SMOKE_GROUP
def test_resume_skips_finished_trials(smoke_sweep):
    sweep_dir, _ = smoke_sweep
    before = {name: _evaluations(sweep_dir / "trials" / name / "version_0") for name in (SAC_TRIAL, TD3_TRIAL)}
    result = _lsrl_process("sweep", "--resume", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    assert "2 of 2 trials finished" in result.stdout
    for name in (SAC_TRIAL, TD3_TRIAL):
        assert (sweep_dir / "trials" / name / "fit.log").read_text().count("$ lsrl fit") == 1  # not started again
        assert _evaluations(sweep_dir / "trials" / name / "version_0") == before[name]


def _start_long_sac_sweep(tmp_path: Path, models: tuple[str, ...] = ("SAC",)) -> tuple[subprocess.Popen, Path]:
    """Start ``lsrl sweep`` of the smoke sweep's ``models`` trials for 1400 steps on a 1-CPU local Ray instance
    (one trial at a time, SAC first); return once the SAC trial evaluated at step 400.

    Returns:
        the sweep's process (output piped) and the SAC trial's run folder.

    """
    content = yaml.safe_load(SMOKE.read_text())
    grid = {"model": [f"lightning_sparse_rl.{model}" for model in models]}
    content.update(config=str(REPO / "configs/sac.yaml"), grid=grid)
    content["set"]["data.max_timesteps"] = 1400
    sweep = _write(tmp_path / "long.yaml", content)
    command = lsrl_command("sweep", str(sweep), "--dir", str(tmp_path / "long"))
    command += ["--cpus", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    run_dir = tmp_path / "long" / "trials" / SAC_TRIAL / "version_0"
    deadline = time.monotonic() + 300
    while not ((run_dir / "evaluations.csv").exists() and max(s for s, _, _ in _evaluations(run_dir)) >= 400):
        assert process.poll() is None, (
            f"the sweep ended before its trial's evaluation at step 400: {process.stdout.read()}"
        )
        assert time.monotonic() < deadline, "the trial did not reach its evaluation at step 400 within 300 s"
        time.sleep(0.05)
    return process, run_dir


@SMOKE_GROUP
def test_a_killed_trial_is_retried_from_its_checkpoint_without_a_gap_or_a_repeat(smoke_sweep, tmp_path):
    """SIGKILL the trial's lsrl fit after its second evaluation: Ray retries the trial, which resumes ``last.ckpt``.

    Its evaluations are those of an uninterrupted run: the smoke sweep's SAC trial (the same settings but
    ``max_timesteps``) at 200, 400 and 600 steps, bit for bit.
    """
    sweep_dir, _ = smoke_sweep
    process, run_dir = _start_long_sac_sweep(tmp_path)
    owner = json.loads((run_dir / "lsrl.lock").read_text())
    os.kill(owner["pid"], signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    assert f"Trial {SAC_TRIAL} failed (failure 1); Ray retries it" in output
    log = (tmp_path / "long" / "trials" / SAC_TRIAL / "fit.log").read_text()
    assert log.count("$ lsrl fit") == 2 and "--ckpt_path last" in log.split("$ lsrl fit")[2]
    evaluations = _evaluations(run_dir)
    assert [(step, seed) for step, seed, _ in evaluations] == [
        (s, seed) for s in range(200, 1600, 200) for seed in (1, 2)
    ]
    uninterrupted = _evaluations(sweep_dir / "trials" / SAC_TRIAL / "version_0")
    assert evaluations[:6] == uninterrupted


@SMOKE_GROUP
def test_ctrl_c_stops_a_sweep_with_checkpoints_and_resume_continues_it(smoke_sweep, tmp_path):
    """Ctrl-C (SIGINT to lsrl sweep) mid-trial, with a second trial still waiting for a CPU: the running trial's
    lsrl fit writes a checkpoint and stops, both trials are unfinished (status 130 and the resume command);
    ``lsrl sweep --resume`` continues the first from there, without a gap or a repeat, and runs the second."""
    sweep_dir, _ = smoke_sweep
    process, run_dir = _start_long_sac_sweep(tmp_path, models=("SAC", "TD3"))
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output[-4000:]
    assert "trials: 2 unfinished" in output and re.search(r"model=TD3 +UNFINISHED +0/1400 +- +0", output)
    assert "0 of 2 trials finished" in output
    assert f"Unfinished trials remain; continue with: lsrl sweep --resume {tmp_path / 'long'}" in output
    log = (tmp_path / "long" / "trials" / SAC_TRIAL / "fit.log").read_text()
    assert re.search(r"Stopped by SIGTERM during (training|evaluation); wrote", log)  # its worker's stop, as SIGTERM
    stopped_at = max(step for step, _, _ in _evaluations(run_dir))
    assert stopped_at < 1400
    result = _lsrl_process("sweep", "--resume", str(tmp_path / "long"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 of 2 trials finished" in result.stdout
    td3_run = tmp_path / "long" / "trials" / TD3_TRIAL / "version_0"
    assert max(step for step, _, _ in _evaluations(td3_run)) == 1400
    log = (tmp_path / "long" / "trials" / SAC_TRIAL / "fit.log").read_text()
    assert log.count("$ lsrl fit") == 2 and "--ckpt_path last" in log.split("$ lsrl fit")[2]
    evaluations = _evaluations(run_dir)
    assert [(step, seed) for step, seed, _ in evaluations] == [
        (s, seed) for s in range(200, 1600, 200) for seed in (1, 2)
    ]
    assert evaluations[:6] == _evaluations(sweep_dir / "trials" / SAC_TRIAL / "version_0")


@SMOKE_GROUP
def test_a_sweep_runs_unchanged_on_a_ray_cluster_given_by_address(smoke_sweep, tmp_path):
    """A real Ray head node (``ray start --head``) as the cluster: ``--address HOST:PORT`` runs the sweep there.

    Ray's head nodes require token authentication: without ``RAY_AUTH_MODE=token`` the sweep says so in one line.
    """
    sweep_dir, _ = smoke_sweep
    content = yaml.safe_load(SMOKE.read_text())
    content.update(config=str(REPO / "configs/sac.yaml"), grid={"model": ["lightning_sparse_rl.SAC"]})
    sweep = _write(tmp_path / "one.yaml", content)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RAY_kill_child_processes_on_worker_exit": "0"}
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    head = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",  # this process owns the cluster's processes: ending it stops this cluster only (not `ray stop`)
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    cluster = subprocess.Popen(head, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    address = ("--address", f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the Ray head did not listen on port {port} within 120 s"
                time.sleep(0.5)
        refused = _lsrl_process(
            "sweep", str(sweep), "--dir", str(tmp_path / "refused"), *address, env=env | {"RAY_AUTH_MODE": "disabled"}
        )
        result = _lsrl_process(
            "sweep", str(sweep), "--dir", str(tmp_path / "on_cluster"), *address, env=env | {"RAY_AUTH_MODE": "token"}
        )
    finally:
        cluster.terminate()
        cluster.wait(timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: the Ray cluster at 127.0.0.1:{port} requires token authentication: set RAY_AUTH_MODE=token, with "
        "the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"on the Ray cluster at 127.0.0.1:{port} (2 CPUs, 0 GPUs)" in result.stdout
    run_dir = tmp_path / "on_cluster" / "trials" / SAC_TRIAL / "version_0"
    assert _evaluations(run_dir) == _evaluations(sweep_dir / "trials" / SAC_TRIAL / "version_0")


@pytest.mark.parametrize("sweep_file", sorted((REPO / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_pass_the_settings_check(sweep_file, tmp_path):
    """Every trial of every shipped sweep file parses with lsrl fit's own parser (what runs before Ray starts)."""
    from lightning_sparse_rl.cli.sweep import check_trials

    trials = expand_trials(load_sweep_file(sweep_file))
    check_trials(trials, tmp_path / sweep_file.stem)
    assert trials and all(trial.max_timesteps > 0 for trial in trials)
    if sweep_file.stem == "methods":  # 2 envs × 6 methods, each at 90 % where it is sparse
        assert len(trials) == 12
        names = {trial.configuration for trial in trials}
        assert "config=ds_td3,global_sparsity=0.9,growth=gradient" in names, names
