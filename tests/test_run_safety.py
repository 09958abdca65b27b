"""Runs you can trust: resume as a transaction on the run folder, logs that continue, a lock per run folder,
stop signals in every phase, one ``last.ckpt``, and one-line errors, all through the real ``lsrl`` command."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import STDOUT

import pytest
import yaml
from helpers import lsrl_command, one_line_error

from lightning_sparse_rl.cli import main as lsrl_main
from lightning_sparse_rl.cli.tutorial import main as tutorial_main
from lightning_sparse_rl.loggers import CSVLogger
from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO
from lightning_sparse_rl.persistence.config_changes import config_changes
from lightning_sparse_rl.persistence.run_lock import LOCK_FILE, RunFolderBusy, RunLock

TESTS = Path(__file__).resolve().parent

#: A small Pendulum-v1 run: 100 random steps, 400 training steps, an evaluation every 200.
#: It lists a progress bar and disables it (``--trainer.enable_progress_bar false`` must work with configs that do).
BASE = {
    "seed_everything": 0,
    "model": {"class_path": "lightning_sparse_rl.SAC", "init_args": {"hidden_width": 16}},
    "data": {
        "env_id": "Pendulum-v1",
        "start_timesteps": 100,
        "max_timesteps": 400,
        "eval_freq": 200,
        "eval_episodes": 1,
        "batch_size": 16,
        "buffer_size": 2000,
    },
    "trainer": {
        "logger": [{"class_path": "lightning_sparse_rl.loggers.CSVLogger", "init_args": {"save_dir": "runs"}}],
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": "eval/return", "mode": "max", "filename": "best", "save_last": True},
            },
            {"class_path": "lightning.pytorch.callbacks.TQDMProgressBar", "init_args": {"refresh_rate": 50}},
        ],
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
}
SPARSE_CALLBACKS = [
    {
        "class_path": "lightning_sparse_rl.callbacks.SparsityDistributionCallback",
        "init_args": {"global_sparsity": 0.5},
    },
    {"class_path": "lightning_sparse_rl.callbacks.DynamicSparsityCallback", "init_args": {"update_period": 50}},
]
RUN = Path("runs/lightning_logs/version_0")


def _write_config(folder: Path, *, sparse: bool = False, **data: object) -> Path:
    config = yaml.safe_load(yaml.safe_dump(BASE))
    config["data"].update(data)
    if sparse:
        config["trainer"]["callbacks"] += SPARSE_CALLBACKS
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _logged(run_dir: Path, key: str) -> list[int]:
    """The steps at which ``key`` has a value in ``metrics.csv``, in file order."""
    return [int(float(row["step"])) for row in _rows(run_dir / "metrics.csv") if row.get(key)]


def _subprocess(*argv: str, cwd: Path, **kwargs: object) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS), PYTHONUNBUFFERED="1")
    return subprocess.Popen(lsrl_command(*argv), cwd=cwd, env=env, text=True, **kwargs)


def _run(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    process = _subprocess(*argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# --------------------------------------------------------------------------------------------- finished runs

#: The tests that resume the finished base run share one worker (``--dist loadgroup``), so it is fitted once.
FINISHED_RUN_GROUP = pytest.mark.xdist_group("run_safety_finished_run")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run of the base config (400 steps; the folder holding ``runs/``), made once and copied by each
    test that resumes it (a copied run folder reads nothing of the original's)."""
    folder = tmp_path_factory.mktemp("finished_run")
    done = _run("fit", "--config", str(_write_config(folder)), cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def _copy_of(run: Path, tmp_path: Path) -> Path:
    """``tmp_path``'s own copy of ``run``'s ``runs/`` folder; its run folder (``tmp_path / RUN``)."""
    shutil.copytree(run / "runs", tmp_path / "runs")
    return tmp_path / RUN


@FINISHED_RUN_GROUP
def test_a_finished_run_resumed_exits_at_once_and_a_raised_budget_extends_it(finished_run, tmp_path):
    """Resuming a run at max_timesteps says so and changes nothing; a larger max_timesteps continues it."""
    run_dir = _copy_of(finished_run, tmp_path)
    before = _snapshot(run_dir)
    resume = ("fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last")

    finished = _run(*resume, cwd=tmp_path, timeout=120)  # it used to spin through empty epochs forever
    assert finished.returncode == 0, finished.stderr
    assert f"{run_dir / 'checkpoints' / 'last.ckpt'} is already at max_timesteps=400 (400 training steps); " in (
        finished.stdout
    )
    assert "raise --data.max_timesteps to continue" in finished.stdout
    assert _snapshot(run_dir) == before

    extended = _run(*resume, "--data.max_timesteps=600", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert "Resuming with a changed setting: data.max_timesteps 400 → 600" in extended.stdout
    assert [row["step"] for row in _rows(run_dir / "evaluations.csv")] == ["200", "400", "600"]
    assert _logged(run_dir, "eval/return") == [199, 399, 599]  # the earlier rows are kept, none twice
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["max_timesteps"] == 600
    (entry,) = yaml.safe_load((run_dir / "resumes.yaml").read_text())
    assert entry["train_steps"] == 400
    assert entry["changes"] == {"data.max_timesteps": {"saved": 400, "given": 600, "forced": False}}
    assert "Best evaluation return" in extended.stderr + extended.stdout
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert [f for f in files if f.endswith(".ckpt")] == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt


# ------------------------------------------------------------------------------------------------ logs


def test_metrics_continue_without_gaps_or_duplicates_after_kill_9(tmp_path):
    """kill -9 mid-run, then resume: metrics.csv holds every step once, as an uninterrupted run's does."""
    config = _write_config(tmp_path, max_timesteps=1000, start_timesteps=2000, buffer_size=5000)
    common = ("--config", str(config), "--checkpoints.every_n_env_steps=100")
    assert _run("fit", *common, "--trainer.logger.init_args.name=straight", cwd=tmp_path).returncode == 0

    process = _subprocess(
        "fit", *common, "--trainer.logger.init_args.name=killed", cwd=tmp_path, stdout=subprocess.PIPE, stderr=STDOUT
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Total Steps: 600 "):
            process.kill()
            break
    else:
        pytest.fail(f"lsrl fit ended (status {process.wait()}) before its episode line at training step 600")
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed = tmp_path / "runs" / "killed" / "version_0"
    resumed = _run("fit", "--config", str(killed / "config.yaml"), "--ckpt_path", "last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    straight = tmp_path / "runs" / "straight" / "version_0"
    assert (killed / "evaluations.csv").read_text() == (straight / "evaluations.csv").read_text()  # exact resume
    for key in ("train/critic_loss", "train/actor_loss", "train/episode_return", "eval/return"):
        steps = _logged(killed, key)
        assert steps == _logged(straight, key), key  # same steps, in order, none missing or twice
    assert _logged(killed, "train/critic_loss") == list(range(49, 1000, 50))


# ------------------------------------------------------------------------------------------- config changes


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory) -> Path:
    """A finished 50 % DST run (the folder holding ``runs/``), made once and copied by each test."""
    folder = tmp_path_factory.mktemp("sparse_run")
    config = _write_config(folder, sparse=True)
    assert _run("fit", "--config", str(config), cwd=folder).returncode == 0
    return folder


def _sparse_override(folder: Path, **init_args: object) -> Path:
    """A second config file whose callbacks replace the run's: sparsity ``init_args`` changed (or DST dropped)."""
    callbacks = yaml.safe_load(yaml.safe_dump(BASE["trainer"]["callbacks"] + SPARSE_CALLBACKS))
    if init_args.pop("drop_dst", False):
        callbacks = callbacks[:-1]
    (sparse,) = [c for c in callbacks if c["class_path"].endswith("SparsityDistributionCallback")]
    sparse["init_args"].update(init_args)
    path = folder / "override.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


#: change class → (command-line changes, or sparsity init_args for an override file; the line listing it)
REFUSED = {
    "network shape": (["--model.hidden_width=32"], r"model\.init_args\.hidden_width 16 → 32"),
    "algorithm": (["--model=lightning_sparse_rl.TD3"], r"model\.class_path \S*SAC → \S*TD3"),
    "env id": (["--data.env_id=MountainCarContinuous-v0"], r"data\.env_id Pendulum-v1 → MountainCarContinuous-v0"),
    "sparsity level": ({"global_sparsity": 0.8}, r"\[SparsityDistributionCallback\]\.global_sparsity 0\.5 → 0\.8"),
    "sparsity distribution": ({"distribution": "ER"}, r"\[SparsityDistributionCallback\]\.distribution uniform → ER"),
    "sparse training method": (
        {"drop_dst": True},
        r"trainer\.callbacks\[DynamicSparsityCallback\] present → \(absent\)",
    ),
    "noise features": (["--data.fake_features=0.5"], r"data\.fake_features 0\.0 → 0\.5"),
    "seed": (["--seed_everything=3"], r"seed_everything 0 → 3"),
    "learning rate": (["--model.lr=0.0005"], r"model\.init_args\.lr 0\.001 → 0\.0005"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_resume_that_changes_what_the_checkpoint_means_is_refused_and_changes_nothing(
    case, sparse_run, tmp_path, monkeypatch, capsys
):
    """Each refused change: one line naming every differing key (saved → given); the run folder byte-identical."""
    shutil.copytree(sparse_run / "runs", tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    changes, listed = REFUSED[case]
    if isinstance(changes, dict):
        changes = ["--config", str(_sparse_override(tmp_path, **changes))]
    before = _snapshot(tmp_path / "runs")
    argv = ["fit", "--config", str(RUN / "config.yaml"), *changes, "--data.max_timesteps=600", "--ckpt_path", "last"]
    error = one_line_error(capsys, lsrl_main, argv)
    assert error.startswith(f"error: cannot resume {(RUN / 'checkpoints' / 'last.ckpt').resolve()} with this config: ")
    assert re.search(listed, error), error
    assert "start a new run, or pass --force_resume true" in error
    assert _snapshot(tmp_path / "runs") == before


#: change class → command-line changes that a resume accepts and records
ALLOWED = {
    "logging": ["--progress.print_episodes=false", "--trainer.log_every_n_steps=25"],
    "checkpoint cadence": ["--checkpoints.every_n_env_steps=100"],
    "device": ["--trainer.accelerator=cpu"],
    "evaluation episodes": ["--data.eval_episodes=2"],
}


@pytest.mark.parametrize("case", list(ALLOWED))
def test_a_resume_with_safe_changes_continues_and_records_them(case, sparse_run, tmp_path, monkeypatch, capsys):
    """Safe changes (with a longer run) are accepted, printed and appended to resumes.yaml."""
    shutil.copytree(sparse_run / "runs", tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    lsrl_main(
        ["fit", "--config", str(RUN / "config.yaml"), *ALLOWED[case], "--data.max_timesteps=600", "--ckpt_path", "last"]
    )
    out = capsys.readouterr().out
    (entry,) = yaml.safe_load((RUN / "resumes.yaml").read_text())
    changed = {key: value for key, value in entry["changes"].items() if key != "data.max_timesteps"}
    assert changed and not any(change["forced"] for change in changed.values())
    for key, change in changed.items():
        line = f"Resuming with a changed setting: {key} {change['saved']} → {change['given']}"
        assert line.replace("None", "null") in out
    assert [row["step"] for row in _rows(RUN / "evaluations.csv")] == ["200", "400", "600"]
    sparsity = _rows(RUN / "sparsity.csv")[-1]
    assert float(sparsity["sparsity/actor/global"]) == pytest.approx(0.5, abs=0.01)  # still the checkpoint's 50 % masks


def test_force_resume_records_forced_changes_and_a_mismatched_network_still_changes_nothing(
    sparse_run, tmp_path, monkeypatch, capsys
):
    """--force_resume: a new learning rate is recorded as forced; a new width fails in one line, folder intact."""
    shutil.copytree(sparse_run / "runs", tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    resume = ["fit", "--config", str(RUN / "config.yaml"), "--data.max_timesteps=600", "--ckpt_path", "last"]
    before = _snapshot(tmp_path / "runs")
    error = one_line_error(capsys, lsrl_main, [*resume, "--model.hidden_width=32", "--force_resume=true"])
    assert error.startswith("error: checkpoint ") and "does not fit this config's networks" in error
    assert _snapshot(tmp_path / "runs") == before

    lsrl_main([*resume, "--model.lr=0.0005", "--force_resume=true"])
    assert "Resuming with a changed setting (forced): model.init_args.lr 0.001 → 0.0005" in capsys.readouterr().out
    (entry,) = yaml.safe_load((RUN / "resumes.yaml").read_text())
    assert entry["changes"]["model.init_args.lr"] == {"saved": 0.001, "given": 0.0005, "forced": True}
    assert yaml.safe_load((RUN / "config.yaml").read_text())["force_resume"] is False  # never saved as true


# --------------------------------------------------------------------------------------------- damage


def test_a_flipped_byte_in_last_ckpt_is_detected_before_anything_changes(sparse_run, tmp_path, monkeypatch, capsys):
    """One byte flipped in the middle of last.ckpt (weights, moments): resume, view and export refuse it."""
    shutil.copytree(sparse_run / "runs", tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    last = RUN / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    before = _snapshot(tmp_path / "runs")
    resume = ["fit", "--config", str(RUN / "config.yaml"), "--data.max_timesteps=600", "--ckpt_path", "last"]
    for argv in [resume, ["view", str(last), "--record", "x.gif"], ["export", str(last), "p.pt"]]:
        error = one_line_error(capsys, lsrl_main, argv)
        assert f"{last} is truncated or corrupted" in error
        assert "is truncated or corrupted: its bytes do not match the SHA-256 recorded when it was written" in error
    assert _snapshot(tmp_path / "runs") == before
    assert not Path("x.gif").exists() and not Path("p.pt").exists()


# ----------------------------------------------------------------------------------------------- locks


@FINISHED_RUN_GROUP
def test_a_second_process_is_refused_and_a_stale_lock_is_taken_over(finished_run, tmp_path):
    """While a run trains, a second lsrl on its folder is refused naming the owner; after kill -9 the lock is stale."""
    run_dir = _copy_of(finished_run, tmp_path)
    resume = ("fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last")
    owner = _subprocess(*resume, "--data.max_timesteps=100000", cwd=tmp_path, stdout=subprocess.DEVNULL)
    lock = run_dir / "lsrl.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()):
        assert time.monotonic() < deadline, "the first lsrl fit did not take the run folder's lock within 120 s"
        time.sleep(0.1)
    try:
        second = _run(*resume, "--data.max_timesteps=100000", cwd=tmp_path)
    finally:
        owner.kill()
        owner.wait(timeout=60)
    assert second.returncode == 2
    error = second.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: run folder {run_dir} is in use by PID {owner.pid} on host ")
    assert "Traceback" not in second.stderr
    assert lock.exists()  # left behind by the killed owner

    reached = RunCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["EnvDataModule"]["train_steps"]
    third = _run(*resume, f"--data.max_timesteps={reached + 200}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert f"Took over the stale lock of {run_dir}: PID {owner.pid} on host " in third.stdout
    assert "is no longer running" in third.stdout
    assert not lock.exists()  # removed at the end


def test_two_new_runs_started_together_get_their_own_version_folders(tmp_path):
    """Two ``lsrl fit`` of the same config at once: two complete version folders, no shared files."""
    config = _write_config(tmp_path, max_timesteps=200)
    processes = [_subprocess("fit", "--config", str(config), cwd=tmp_path, stdout=subprocess.DEVNULL) for _ in "ab"]
    assert [process.wait(timeout=300) for process in processes] == [0, 0]
    runs = sorted(path.name for path in (tmp_path / "runs" / "lightning_logs").iterdir())
    assert runs == ["version_0", "version_1"]
    for run in runs:
        run_dir = tmp_path / "runs" / "lightning_logs" / run
        assert [row["step"] for row in _rows(run_dir / "evaluations.csv")] == ["200"]
        assert _logged(run_dir, "eval/return") == [199] and not (run_dir / "lsrl.lock").exists()


# --------------------------------------------------------------------------------------------- signals


@pytest.fixture(scope="module")
def uninterrupted_evaluations(tmp_path_factory):
    """``evaluations(**data)``: the ``evaluations.csv`` text of an uninterrupted 600-step run of the base config
    with ``data``, fitted once per ``data`` in this worker (the two evaluation cases share theirs)."""
    made: dict[str, str] = {}

    def evaluations(**data: object) -> str:
        key = repr(sorted(data.items()))
        if key not in made:
            folder = tmp_path_factory.mktemp("straight")
            config = _write_config(folder, max_timesteps=600, **data)
            straight = _run("fit", "--config", str(config), "--trainer.logger.init_args.name=straight", cwd=folder)
            assert straight.returncode == 0, straight.stderr
            made[key] = (folder / "runs" / "straight" / "version_0" / "evaluations.csv").read_text()
        return made[key]

    return evaluations


#: The two cases that signal an evaluation share their uninterrupted run: one worker (``--dist loadgroup``).
EVALUATION_SIGNALS = pytest.mark.xdist_group("run_safety_evaluation_signals")


@pytest.mark.parametrize(
    ("phase", "helper", "data", "stopped_at"),
    [
        ("warm-up", "cli_helpers.SignalAfterSeconds", {"start_timesteps": 30_000, "buffer_size": 40_000}, 0),
        pytest.param(
            "evaluation", "cli_helpers.SignalDuringEvaluation", {"eval_episodes": 3}, 400, marks=EVALUATION_SIGNALS
        ),
        pytest.param(
            "final evaluation",
            "cli_helpers.SignalDuringEvaluation",
            {"eval_episodes": 3},
            600,
            marks=EVALUATION_SIGNALS,
        ),
    ],
)
def test_sigterm_in_warm_up_or_evaluation_stops_with_a_checkpoint_and_resumes_exactly(
    phase, helper, data, stopped_at, tmp_path, uninterrupted_evaluations
):
    """A real SIGTERM during the warm-up (0.5 s in) or between evaluation episodes (2nd or last evaluation, after
    its first episode): a checkpoint, status 0, and the resumed run's evaluations equal an uninterrupted run's."""
    config = _write_config(tmp_path, max_timesteps=600, **data)
    evaluation = {"evaluation": 2, "episode": 0, "final evaluation": 3}.get(phase, 2)
    arguments = {"seconds": 0.5} if phase == "warm-up" else {"evaluation": evaluation, "episode": 0}
    helper_args = [f"--trainer.callbacks+={helper}", *(f"--trainer.callbacks.{k}={v}" for k, v in arguments.items())]
    stopped = _run(
        "fit", "--config", str(config), *helper_args, "--trainer.logger.init_args.name=stopped", cwd=tmp_path
    )
    run_dir = tmp_path / "runs" / "stopped" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stopped.returncode == 0, stopped.stderr
    assert "Received SIGTERM: stopping at the next safe point, with a checkpoint." in stopped.stderr + stopped.stdout
    assert (
        f"Stopped by SIGTERM during {phase.split()[-1]}; wrote {Path('runs/stopped/version_0/checkpoints/last.ckpt')}. "
        f"Resume with: lsrl fit --config {Path('runs/stopped/version_0/config.yaml')} --ckpt_path last"
    ) in stopped.stdout
    state = RunCheckpointIO().load_checkpoint(last)["EnvDataModule"]
    assert state["train_steps"] == stopped_at
    if phase == "warm-up":
        assert 0 < state["runner"]["env_steps"] < 30_000

    never = [f"--trainer.callbacks.{k}=0" for k in arguments]  # the resumed run is not signalled again
    resumed = _run("fit", "--config", str(run_dir / "config.yaml"), *never, "--ckpt_path", "last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / "evaluations.csv").read_text() == uninterrupted_evaluations(**data)
    assert _logged(run_dir, "eval/return") == [199, 399, 599]


# ------------------------------------------------------------------------------------------ user errors


def _impossible_sparsity(folder: Path) -> list[str]:
    override = folder / "impossible.yaml"
    callbacks = [{**SPARSE_CALLBACKS[0], "init_args": {"global_sparsity": 0.99}}]
    override.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return ["--config", str(override)]


def _file(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return str(folder / name)


#: case → (arguments after ``lsrl fit --config base.yaml``, or a function of the folder giving them; the message)
FIT_ERRORS = {
    "unknown env id": (["--data.env_id=NoSuchEnv-v0"], "error: Environment `NoSuchEnv` doesn't exist."),
    "discrete actions": (["--data.env_id=CartPole-v1"], "error: env_id='CartPole-v1' has a Discrete action space"),
    "impossible sparsity": (_impossible_sparsity, "error: global_sparsity=0.99"),
    "zero evaluation episodes": (["--data.eval_episodes=0"], "error: eval_episodes=0 must be > 0"),
    "zero batch size": (["--data.batch_size=0"], "error: batch_size=0 must be > 0"),
    "negative learning rate": (["--model.lr=-1"], "error: lr=-1.0 must be > 0"),
    "tau above 1": (["--model.tau=2"], "error: tau=2.0 must be in [0.0, 1.0]"),
    "wrong type": (["--data.batch_size=abc"], "error: data.batch_size: Expected a <class 'int'>. Got value: abc"),
    "unknown optimizer": (["--model.optimizer=adamw"], "error: model.optimizer: Expected a typing.Literal['adam'"),
    "unknown algorithm": (["--model=lightning_sparse_rl.PPO"], "error: model: Problem with given class_path"),
    "unknown key": (["--data.bogus=1"], "error: unrecognized arguments: --data.bogus=1"),
    "negative seed": (["--seed_everything=-1"], "error: seed_everything=-1 must be in [0, 4294967295]"),
    "missing checkpoint": (["--ckpt_path=nope.ckpt"], "error: --ckpt_path nope.ckpt: no such checkpoint file"),
    "no last checkpoint": (["--ckpt_path=last"], "error: --ckpt_path last: no checkpoint at"),
    "buffer larger than memory": (
        ["--data.buffer_size=100000000000"],
        "error: buffer_size=100,000,000,000 needs 3,600,000,000,000 bytes (3352.8 GiB) for the replay buffer on cpu, "
        "but only ",
    ),
    "empty config file": (
        lambda folder: ["--config", _file(folder, "empty.yaml", "")],
        "error: config file {folder}/empty.yaml is empty",
    ),
    "YAML syntax error": (
        lambda folder: ["--config", _file(folder, "broken.yaml", "data:\n  env_id: [Pendulum-v1\n")],
        "error: config file {folder}/broken.yaml, line 3, column 1: expected ',' or ']'",
    ),
    "config that is a list": (
        lambda folder: ["--config", _file(folder, "list.yaml", "- a\n- b\n")],
        "error: config file {folder}/list.yaml must hold keys (model:, data:, trainer:, ...), not a list",
    ),
    "missing config file": (["--config=nope.yaml"], "error: config file nope.yaml does not exist"),
}


@pytest.mark.parametrize("case", list(FIT_ERRORS))
def test_every_bad_fit_input_is_one_line_with_status_2(case, tmp_path, monkeypatch, capsys):
    """``lsrl fit``: one ``error: ...`` line on stderr, status 2, no traceback, nothing trained."""
    monkeypatch.chdir(tmp_path)
    changes, message = FIT_ERRORS[case]
    argv = ["fit", "--config", str(_write_config(tmp_path)), *(changes(tmp_path) if callable(changes) else changes)]
    error = one_line_error(capsys, lsrl_main, argv)
    assert error.startswith(message.format(folder=tmp_path)), error
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))


#: case → (the command, its arguments, the start of its one error line)
TOOL_ERRORS = {
    "tutorial: unknown policy": (
        tutorial_main,
        ["--policy", "PPO"],
        "error: python -m lightning_sparse_rl.main: argument --policy: invalid choice: 'PPO'",
    ),
    "tutorial: negative seed": (
        tutorial_main,
        ["--seed", "-1", "--wandb_mode", "disabled", "--env", "Pendulum-v1"],
        "error: seed_everything=-1 must be in [0, 4294967295]",
    ),
    "tutorial: unknown env": (
        tutorial_main,
        ["--env", "NoSuchEnv-v0", "--wandb_mode", "disabled"],
        "error: Environment `NoSuchEnv` doesn't exist.",
    ),
    "tutorial: not a number": (
        tutorial_main,
        ["--lr", "fast"],
        "error: python -m lightning_sparse_rl.main: argument --lr: invalid float value: 'fast'",
    ),
    "view: a text file": (
        lsrl_main,
        ["view", "{folder}/notes.txt", "--record", "x.gif"],
        "error: {folder}/notes.txt is neither an exported policy",
    ),
    "view: a missing file": (
        lsrl_main,
        ["view", "nope.pt", "--record", "x.gif"],
        "error: no policy or checkpoint file at nope.pt",
    ),
    "view: bad video suffix": (
        lsrl_main,
        ["view", "nope.pt", "--record", "x.avi"],
        "error: lsrl view: --record x.avi: the video file must end in one of",
    ),
    "export: a missing checkpoint": (
        lsrl_main,
        ["export", "nope.ckpt", "p.pt"],
        "error: no policy or checkpoint file at nope.ckpt",
    ),
    "plot: not a run folder": (lsrl_main, ["plot", "{folder}"], "error: lsrl plot: {folder} has no evaluations.csv"),
}


@pytest.mark.parametrize("case", list(TOOL_ERRORS))
def test_every_bad_input_of_the_other_commands_is_one_line_with_status_2(case, tmp_path, monkeypatch, capsys):
    """The tutorial front, ``lsrl view``, ``export`` and ``plot``: one ``error: ...`` line, status 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a policy\n")
    command, argv, message = TOOL_ERRORS[case]
    error = one_line_error(capsys, command, [arg.format(folder=tmp_path) for arg in argv])
    assert error.startswith(message.format(folder=tmp_path)), error


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    """``--debug`` (or ``LSRL_DEBUG=1``) lets the exception through, for a bug report."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LSRL_DEBUG", raising=False)
    with pytest.raises(ValueError, match="eval_episodes=0 must be > 0"):
        lsrl_main(["fit", "--config", str(_write_config(tmp_path)), "--data.eval_episodes=0", "--debug"])
    with pytest.raises(ValueError, match="eval_episodes=0 must be > 0"):
        tutorial_main(["--eval_episodes", "0", "--wandb_mode", "disabled", "--env", "Pendulum-v1", "--debug"])
    monkeypatch.setenv("LSRL_DEBUG", "1")
    with pytest.raises(ValueError, match="batch_size=0 must be > 0"):
        lsrl_main(["fit", "--config", str(_write_config(tmp_path)), "--data.batch_size=0"])


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays_intact(tmp_path):
    """A resume on a file system with 48 kB left (the replay buffer's file needs 72 kB): one error line, status 2,
    and last.ckpt as it was."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount a small file system")
    disk = tmp_path / "disk"
    disk.mkdir()
    config = _write_config(tmp_path, max_timesteps=200)
    lsrl = f"{sys.executable} -c 'from lightning_sparse_rl.cli import main; main()'"
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {disk} && cd {disk} && {lsrl} fit --config {config} > first.log 2>&1 && "
        f"sha256sum {RUN}/checkpoints/last.ckpt > before.sha && "
        "dd if=/dev/zero of=filler bs=1k count=$(( $(df --output=avail -k . | tail -1) - 48 )) 2>/dev/null; "
        f"{lsrl} fit --config {RUN}/config.yaml --ckpt_path last --data.max_timesteps=400 "
        "> resume.out 2> resume.err; echo $? > resume.rc; "
        "rm filler && sha256sum -c before.sha > /dev/null && echo intact > check; "
        f"cp -r resume.* check {tmp_path}/"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode().strip()}")
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env, timeout=300)
    err = (tmp_path / "resume.err").read_text()
    assert (tmp_path / "resume.rc").read_text().strip() == "2", err
    assert "Traceback" not in err
    (error,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: no space left on the device to write ")
    assert (tmp_path / "check").read_text().strip() == "intact"


# ------------------------------------------------------------------------------------- smaller contracts


def test_config_changes_classify_keys_and_read_one_callback_without_a_list():
    """Protected vs safe keys, a single callback mapping, and keys a saved config lacks (newer parameters)."""
    sparse = {
        "class_path": "lightning_sparse_rl.callbacks.SparsityDistributionCallback",
        "init_args": {"global_sparsity": 0.5},
    }
    saved = {"seed_everything": 0, "model": {"init_args": {"lr": 0.001}}, "trainer": {"callbacks": sparse}}
    given = yaml.safe_load(yaml.safe_dump(saved))
    given["trainer"]["callbacks"]["init_args"]["global_sparsity"] = 0.7  # one callback, no list
    given["model"]["init_args"]["new_option"] = True  # a parameter this run's version did not have
    given["trainer"]["log_every_n_steps"] = 10
    changes = {change.key: change for change in config_changes(saved, given)}
    assert changes["trainer.callbacks[SparsityDistributionCallback].global_sparsity"].protected
    assert not changes["model.init_args.new_option"].protected
    assert str(changes["model.init_args.new_option"]) == "model.init_args.new_option (absent) → True"
    assert not changes["trainer.log_every_n_steps"].protected
    given["trainer"]["callbacks"] = []
    removed = {change.key: change for change in config_changes(saved, given)}
    assert removed["trainer.callbacks[SparsityDistributionCallback]"].protected


def test_metrics_csv_continuation_drops_later_rows_and_a_row_cut_short(tmp_path):
    """The rows before the checkpoint's step stay; later rows and a last row cut off by a crash go."""
    run_dir = tmp_path / "run" / "version_0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("a,step\n1.0,49\n2.0,99\n3.0,149\n4.0,19")  # the last row is cut off
    logger = CSVLogger(tmp_path, name="run", version=0)
    logger.continue_from(100)
    assert (run_dir / "metrics.csv").read_text().startswith("a,step\n1.0,49")  # nothing changes before a save
    logger.log_metrics({"a": 5.0, "b": 6.0}, step=100)
    assert _rows(run_dir / "metrics.csv") == [
        {"a": "1.0", "b": "", "step": "49"},
        {"a": "2.0", "b": "", "step": "99"},
        {"a": "5.0", "b": "6.0", "step": "100"},
    ]


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    """A lock file written on another host may belong to a live run there: refused, naming it and the way out."""
    (tmp_path / LOCK_FILE).write_text('{"pid": 1, "host": "node-elsewhere", "started": "2026-01-01T00:00:00"}')
    with pytest.raises(
        RunFolderBusy, match=r"in use by PID 1 on host node-elsewhere .*remove that file if the run is gone"
    ):
        RunLock(tmp_path).acquire()
    lock = RunLock(tmp_path / "new")
    assert lock.acquire() is None and (tmp_path / "new" / LOCK_FILE).exists()
    with pytest.raises(RunFolderBusy, match=f"in use by PID {os.getpid()}"):
        RunLock(tmp_path / "new").acquire()
    lock.release()
    assert not (tmp_path / "new" / LOCK_FILE).exists()


@FINISHED_RUN_GROUP
def test_a_resume_from_another_directory_continues_in_the_run_folder(finished_run, tmp_path):
    """``--config /abs/RUN_DIR/config.yaml --ckpt_path last`` from elsewhere: every file goes to RUN_DIR."""
    run_dir = _copy_of(finished_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = _run(
        "fit",
        "--config",
        str(run_dir / "config.yaml"),
        "--ckpt_path",
        "last",
        "--data.max_timesteps=600",
        cwd=elsewhere,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert list(elsewhere.iterdir()) == []
    assert [row["step"] for row in _rows(run_dir / "evaluations.csv")] == ["200", "400", "600"]
    assert _logged(run_dir, "eval/return") == [199, 399, 599]


def test_a_missing_replay_buffer_file_is_refused_before_anything_changes(sparse_run, tmp_path, monkeypatch, capsys):
    """The checkpoint's buffer file gone: one line naming it, the folder unchanged."""
    shutil.copytree(sparse_run / "runs", tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    (side,) = (RUN / "checkpoints").glob("last.buffer-*.pt")
    side.unlink()
    before = _snapshot(tmp_path / "runs")
    resume = ["fit", "--config", str(RUN / "config.yaml"), "--data.max_timesteps=600", "--ckpt_path", "last"]
    error = one_line_error(capsys, lsrl_main, resume)
    assert f"the replay buffer file {side.resolve()} of checkpoint" in error and "is missing or truncated" in error
    assert _snapshot(tmp_path / "runs") == before


def test_a_bug_during_training_keeps_its_traceback(tmp_path):
    """A ValueError raised by code during training is a bug, not bad input: a traceback, not one line."""
    config = _write_config(tmp_path)
    failed = _run("fit", "--config", str(config), "--trainer.callbacks+=cli_helpers.BugDuringTraining", cwd=tmp_path)
    assert failed.returncode == 1
    assert "Traceback" in failed.stderr and "ValueError: too many values to unpack" in failed.stderr
    assert "error: too many values" not in failed.stderr


def test_tensorboard_hides_the_events_a_crashed_run_wrote_after_its_checkpoint(tmp_path, monkeypatch, capsys):
    """Resumed in place from step 200 after events up to 399 were written: TensorBoard shows each step once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    logger = '[{"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "runs"}}]'
    lsrl_main(["fit", "--config", str(_write_config(tmp_path, max_timesteps=200)), f"--trainer.logger={logger}"])
    run_dir = tmp_path / RUN
    shutil.copytree(run_dir / "checkpoints", tmp_path / "at200")
    resume = ["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last", "--data.max_timesteps=400"]
    lsrl_main(resume)  # events up to step 399 ...
    shutil.rmtree(run_dir / "checkpoints")
    shutil.copytree(tmp_path / "at200", run_dir / "checkpoints")  # ... then a crash lost the checkpoint at 400
    lsrl_main(resume)
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [event.step for event in events.Scalars("eval/return")] == [199, 399]
