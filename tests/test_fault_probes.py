"""The held-out fault probes of issue 30, one table per group, through the real ``lsrl`` command.

1. a resumed run's ``config.yaml`` describes the run, not the resume; 2. ``lsrl export`` is atomic and its
failures are one line; 3. sweep settings and ``--trainer.default_root_dir`` stay inside their folder; 4. huge
or hostile inputs are refused in one line within seconds; 5. more one-line errors; 6. wrong or missing data
is reported.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from test_run_safety import RUN, _rows, _run, _write_config

# --------------------------------------------------------------------------- 1. config.yaml after a resume

#: The tests that read the resumed run share one pytest-xdist worker (``--dist loadgroup``), so it is made once.
RESUMED_RUN_GROUP = pytest.mark.xdist_group("fault_probes_resumed_run")


class _Runs:
    """The module's finished runs by short name, each made by its fixture only when a case reads it."""

    FIXTURES: ClassVar[dict[str, str]] = {
        "plain": "plain_checkpoint",
        "resumed": "resumed_run",
        "connectivity": "connectivity_run",
    }

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request

    def __getitem__(self, name: str) -> Path:
        return self.request.getfixturevalue(self.FIXTURES[name])


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> Path:
    """A run of 200 steps resumed in place to 400 (the folder holding ``runs/``)."""
    folder = tmp_path_factory.mktemp("resumed_run")
    assert _run("fit", "--config", str(_write_config(folder, max_timesteps=200)), cwd=folder).returncode == 0
    resume = ("fit", "--config", str(RUN / "config.yaml"), "--ckpt_path=last")
    resumed = _run(*resume, "--data.max_timesteps=400", cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    return folder


def _saved_config(folder: Path) -> dict:
    return yaml.safe_load((folder / RUN / "config.yaml").read_text())


def _recorded_config(folder: Path) -> dict:
    checkpoint = torch.load(folder / RUN / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    return yaml.safe_load(checkpoint["callbacks"]["SaveRunConfig"]["config"])


def _repeated(folder: Path) -> dict:
    """``lsrl fit --config RUN/config.yaml``: a new run whose evaluations are the first run's."""
    repeat = _run("fit", "--config", str(RUN / "config.yaml"), cwd=folder)
    assert repeat.returncode == 0, repeat.stderr
    first, second = (folder / RUN.parent / name / "evaluations.csv" for name in ("version_0", "version_1"))
    assert second.read_text() == first.read_text()
    return _saved_config(folder)


#: where the run's config is read after the resume → how
RUN_CONFIGS = {"config.yaml": _saved_config, "the checkpoint's config": _recorded_config, "a repeat": _repeated}


@RESUMED_RUN_GROUP
@pytest.mark.parametrize("case", list(RUN_CONFIGS))
def test_a_resumed_run_records_the_run_not_the_resume(case, resumed_run, tmp_path):
    """After a resume, the run's config names no checkpoint and no version folder; repeating it repeats the run."""
    shutil.copytree(resumed_run / "runs", tmp_path / "runs")  # a copied run folder reads nothing of the original's
    config = RUN_CONFIGS[case](tmp_path)
    assert config["ckpt_path"] is None and config["force_resume"] is False
    (logger,) = config["trainer"]["logger"]
    assert logger["init_args"]["version"] is None
    assert config["data"]["max_timesteps"] == 400
    (entry,) = yaml.safe_load((tmp_path / RUN / "resumes.yaml").read_text())
    assert entry["changes"] == {"data.max_timesteps": {"saved": 200, "given": 400, "forced": False}}


# ------------------------------------------------------------------------------------------- 2. lsrl export


def _in_mount(tmp_path: Path, options: str, prepare: str, export: str) -> tuple[int, str]:
    """Run ``prepare`` then ``lsrl export ...`` in a fresh tmpfs at ``tmp_path/disk`` mounted with ``options``."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount a file system")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode().strip()}")
    disk = tmp_path / "disk"
    disk.mkdir()
    lsrl = f"{sys.executable} -c 'from lightning_sparse_rl.cli import main; main()'"
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {disk} && cd {disk} && echo old > policy.pt && {prepare} && "
        f"mount -o remount,{options} {disk}; {lsrl} {export} 2> {tmp_path}/err; echo $? > {tmp_path}/rc; "
        f"ls -a > {tmp_path}/files; cat policy.pt > {tmp_path}/policy"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env, timeout=300)
    filler = ["filler"] if "dd" in prepare else []
    assert (tmp_path / "files").read_text().split() == [".", "..", *filler, "policy.pt"]  # no temporary file left
    assert (tmp_path / "policy").read_text() == "old\n"  # the previous file is intact
    return int((tmp_path / "rc").read_text()), (tmp_path / "err").read_text()


def _full_disk(tmp_path: Path, checkpoint: Path) -> tuple[int, str]:
    fill = "dd if=/dev/zero of=filler bs=1k count=$(( $(df --output=avail -k . | tail -1) - 4 )) 2>/dev/null; true"
    return _in_mount(tmp_path, "rw", fill, f"export {checkpoint} policy.pt")


def _read_only(tmp_path: Path, checkpoint: Path) -> tuple[int, str]:
    return _in_mount(tmp_path, "ro", "true", f"export {checkpoint} {tmp_path}/disk/policy.pt")


def _folder(tmp_path: Path, checkpoint: Path) -> tuple[int, str]:
    (tmp_path / "out").mkdir()
    exported = _run("export", str(checkpoint), "out", cwd=tmp_path)
    assert list((tmp_path / "out").iterdir()) == []
    return exported.returncode, exported.stderr


def _missing_folder(tmp_path: Path, checkpoint: Path) -> tuple[int, str]:
    exported = _run("export", str(checkpoint), "new/folder/policy.pt", cwd=tmp_path)
    assert _run("view", "new/folder/policy.pt", "--no-render", cwd=tmp_path).returncode == 0
    return exported.returncode, exported.stderr


#: case → (what it does, its exit status, the start of its error line: None for none)
EXPORTS = {
    "full disk": (_full_disk, 2, "error: no space left on the device to write policy.pt ("),
    "read-only folder": (_read_only, 2, "error: Read-only file system: {tmp_path}/disk/policy.pt"),
    "a folder as the path": (_folder, 2, "error: lsrl export: out is a folder: give the policy file to write"),
    "a missing folder": (_missing_folder, 0, None),
}


@RESUMED_RUN_GROUP
@pytest.mark.parametrize("case", list(EXPORTS))
def test_export_is_atomic_and_its_failures_are_one_line(case, resumed_run, tmp_path):
    """``lsrl export``: a failed write leaves the previous file as it was, with one error line and status 2."""
    export, status, message = EXPORTS[case]
    returncode, err = export(tmp_path, resumed_run / RUN / "checkpoints" / "last.ckpt")
    assert returncode == status and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    expected = [] if message is None else [message.format(tmp_path=tmp_path)]
    assert [line[: len(start)] for line, start in zip(errors, expected, strict=False)] == expected, err
    assert len(errors) == len(expected), err


# ------------------------------------------------------------------------ 3. settings stay in their folder


def _sweep_of(folder: Path, **content: object) -> list[str]:
    """``lsrl sweep`` of a one-seed, 200-step sweep of the test config with ``content``, on one CPU."""
    sweep = {"config": str(_write_config(folder, max_timesteps=200)), "seeds": 1, **content}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return ["sweep", str(folder / "sweep.yaml"), "--dir", str(folder / "sweep"), "--cpus", "1"]


#: case → (the command in a folder, the start of its one error line)
ESCAPES = {
    "sweep: a checkpoint name with ..": (
        lambda folder: _sweep_of(folder, grid={"trainer.callbacks.ModelCheckpoint.filename": ["../" * 5 + "escaped"]}),
        "error: sweep file {folder}/sweep.yaml: grid.trainer.callbacks.ModelCheckpoint.filename: "
        "'../../../../../escaped' leads out of the trial folder",
    ),
    "sweep: an absolute folder": (
        lambda folder: _sweep_of(folder, set={"trainer.callbacks.ModelCheckpoint.dirpath": f"{folder}/escaped"}),
        "error: sweep file {folder}/sweep.yaml: trainer.callbacks.ModelCheckpoint.dirpath: '{folder}/escaped' leads",
    ),
    "fit: a checkpoint name with ..": (
        lambda folder: [
            "fit",
            "--config",
            str(_write_config(folder, max_timesteps=200)),
            f"--trainer.default_root_dir={folder}/root",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.filename=" + "../" * 5 + "escaped",
        ],
        "error: trainer.callbacks[ModelCheckpoint].filename='../../../../../escaped' must name a file inside the "
        "checkpoint folder",
    ),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_a_setting_that_names_a_file_outside_its_folder_is_refused_before_anything_runs(case, tmp_path):
    """A path out of the trial (or checkpoint) folder: one line, status 2, no Ray, nothing written anywhere."""
    folder = tmp_path / "a" / "b" / "c"
    folder.mkdir(parents=True)
    command, message = ESCAPES[case]
    result = _run(*command(folder), cwd=folder, timeout=600)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith(message.format(folder=folder)), result.stderr
    written = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert written <= {"a/b/c/base.yaml", "a/b/c/sweep.yaml"}, written


# ----------------------------------------------------------------------------------- 4. huge or hostile inputs

#: A "billion laughs" YAML list (a few hundred bytes): item i is nine aliases of item i - 1, 9**9 strings expanded.
BOMB = "[&l1 [{}], {}]".format(
    ", ".join(["lol"] * 9), ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(2, 10))
)


def _bomb_sweep(folder: Path, where: str) -> list[str]:
    """A sweep file whose ``where`` (``set``, ``environments`` or ``grid``) holds the bomb."""
    value = {"set": f"{{data.eval_episodes: {BOMB}}}", "environments": BOMB, "grid": f"{{model.lr: {BOMB}}}"}[where]
    argv = _sweep_of(folder)
    (folder / "sweep.yaml").write_text(f"config: base.yaml\nseeds: 1\n{where}: {value}\n")
    return argv


def _huge_grid(folder: Path) -> list[str]:
    """A sweep file whose grid lists 700 000 values (over 5 MB), written as text: ``yaml.safe_dump`` of such a list
    takes minutes on a loaded machine, and the file is the same YAML a user could write."""
    argv = _sweep_of(folder)
    values = ", ".join(map(str, range(700_000)))
    with open(folder / "sweep.yaml", "a") as sweep:
        sweep.write(f"grid:\n  model.lr: [{values}]\n")
    assert (folder / "sweep.yaml").stat().st_size > 5_000_000
    return argv


def _fit_of(folder: Path, *args: str) -> list[str]:
    return ["fit", "--config", str(_write_config(folder, max_timesteps=200)), *args]


#: case → (the command in a folder, what its one error line says)
HUGE = {
    "100 000 seeds": (
        lambda folder: _fit_of(folder, "--seeds", "1-100000"),
        ["seeds='1-100000' names 100,000 agents; a population has at most 1,024"],
    ),
    "networks larger than memory": (
        lambda folder: _fit_of(folder, "--seeds", "1-2", "--model.hidden_width", "1000000"),
        ["K=2 agents with hidden_layers=2, hidden_width=1,000,000 needs at least ", "optimizer states on cpu"],
    ),
    "YAML bomb in set": (lambda folder: _bomb_sweep(folder, "set"), ["sweep.yaml expands to more than 100,000"]),
    "YAML bomb in environments": (
        lambda folder: _bomb_sweep(folder, "environments"),
        ["sweep.yaml expands to more than 100,000 values"],
    ),
    "YAML bomb in grid": (lambda folder: _bomb_sweep(folder, "grid"), ["sweep.yaml expands to more than 100,000"]),
    "700 000 grid values": (_huge_grid, ["sweep.yaml: ", " bytes; a sweep file has at most 1,000,000"]),
    "10 000 grid points": (
        lambda folder: _sweep_of(
            folder,
            grid={key: list(range(10)) for key in ("model.lr", "model.tau", "model.discount", "model.weight_decay")},
        ),
        ["sweep.yaml: 10,000 trials; a sweep has at most 1,000"],
    ),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_a_huge_or_hostile_input_is_refused_in_one_short_line_within_seconds(case, tmp_path):
    """Huge populations, networks, YAML bombs and grids: one line under 300 characters, status 2, within 60 s."""
    command, fragments = HUGE[case]
    argv = command(tmp_path)
    started = time.monotonic()
    result = _run(*argv, cwd=tmp_path, timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and len(line) < 300, line
    assert all(fragment in line for fragment in fragments), line
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------- 5. more one-line errors


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of a plain Lightning module (Lightning's BoringModel), not of ``lsrl fit``."""
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    folder = tmp_path_factory.mktemp("plain")
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(BoringModel())
    trainer.save_checkpoint(folder / "plain.ckpt")
    return folder / "plain.ckpt"


def _immutable_run(folder: Path, resumed_run: Path) -> list[str]:
    """The resumed run's folder, copied and made immutable (``chattr +i``); resumed in place."""
    shutil.copytree(resumed_run / "runs", folder / "runs")
    if subprocess.run(["chattr", "+i", str(folder / RUN)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    return ["fit", "--config", str(RUN / "config.yaml"), "--ckpt_path=last", "--data.max_timesteps=600"]


def _evaluations_without_seeds(folder: Path) -> list[str]:
    run_dir = folder / "runs" / "sac" / "version_0"
    run_dir.mkdir(parents=True)
    (run_dir / "evaluations.csv").write_text("step,return,episode_length\n200,-1500.0,200\n")
    (run_dir / "config.yaml").write_text("data: {env_id: Pendulum-v1}\n")
    return ["report", str(run_dir), "--out", str(folder / "report")]


#: case → (the command in a folder, given it and the module's runs; the start of its one error line)
ONE_LINE = {
    "resume of a plain Lightning checkpoint": (
        lambda folder, runs: _fit_of(folder, f"--ckpt_path={runs['plain']}"),
        "error: {plain} is not a checkpoint of lsrl fit (it holds no EnvDataModule state",
    ),
    "export of a plain Lightning checkpoint": (
        lambda folder, runs: ["export", str(runs["plain"]), "p.pt"],
        "error: {plain} is neither an exported policy (.pt of lsrl export) nor a checkpoint (.ckpt of lsrl fit)",
    ),
    "an env id of a module that does not exist": (
        lambda folder, runs: _fit_of(folder, "--data.env_id=nosuchmod:Foo-v0"),
        "error: env_id='nosuchmod:Foo-v0': no module named 'nosuchmod' to make it from",
    ),
    "a sweep of an unknown env": (
        lambda folder, runs: _sweep_of(folder, environments=["NoSuchEnv-v0"]),
        "error: trial NoSuchEnv-v0__default: Environment `NoSuchEnv` doesn't exist.",
    ),
    "a 300-character grid value": (
        lambda folder, runs: _sweep_of(folder, grid={"data.batch_size": ["x" * 300]}),
        "error: trial Pendulum-v1__batch_size=xxxxxxxx",
    ),
    "seeds that are a list of lists": (
        lambda folder, runs: _sweep_of(folder, seeds=[[1, 2]]),
        "error: sweep file {folder}/sweep.yaml: seeds=[[1, 2]] must be a range (1-8), a comma-separated list",
    ),
    "seeds that are a mapping": (
        lambda folder, runs: _sweep_of(folder, seeds={"a": 1}),
        "error: sweep file {folder}/sweep.yaml: seeds={{'a': 1}} must be a range (1-8)",
    ),
    "an immutable run folder": (
        lambda folder, runs: _immutable_run(folder, runs["resumed"]),
        "error: Operation not permitted: {folder}/runs/lightning_logs/version_0/lsrl.lock",
    ),
    "a report of evaluations without seeds": (
        lambda folder, runs: _evaluations_without_seeds(folder),
        "error: {folder}/runs/sac/version_0/evaluations.csv has no column seed (its columns: step, return, episode",
    ),
}


#: the cases (of this table and of ``SAID`` below) that read the resumed run
READ_THE_RESUMED_RUN = {
    "an immutable run folder",
    "a resume after metrics rows were lost",
    "a refused forced resume of another algorithm",
}


def _cases(table: dict) -> list:
    """``table``'s cases, those that read the resumed run in its xdist group."""
    return [pytest.param(case, marks=RESUMED_RUN_GROUP) if case in READ_THE_RESUMED_RUN else case for case in table]


@pytest.mark.parametrize("case", _cases(ONE_LINE))
def test_each_probed_traceback_is_one_line_with_status_2(case, tmp_path, request):
    """Each input that ended in a traceback: one ``error: ...`` line, status 2, no Ray, nothing trained."""
    command, message = ONE_LINE[case]
    runs = _Runs(request)
    argv = command(tmp_path, runs)
    try:
        result = _run(*argv, cwd=tmp_path, timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / RUN)], capture_output=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # Lightning's own "Seed set to N" (an info line of seed_everything) may come before the error
    (line,) = [line for line in result.stderr.strip().splitlines() if not line.startswith("Seed set to ")]
    plain = runs["plain"] if "{plain}" in message else None
    assert line.startswith(message.format(folder=tmp_path, plain=plain)), line
    assert "Ray" not in result.stdout and not (tmp_path / "sweep").exists()
    assert not list(tmp_path.rglob("*.ckpt")) or case == "an immutable run folder"


# --------------------------------------------------------------------------- 6. wrong or missing data, said


@pytest.fixture(scope="module")
def connectivity_run(tmp_path_factory) -> Path:
    """A finished 200-step run with InputConnectivityCallback (its heat-map is an end-of-training file)."""
    folder = tmp_path_factory.mktemp("connectivity_run")
    callback = "--trainer.callbacks+=lightning_sparse_rl.callbacks.InputConnectivityCallback"
    assert _run(*_fit_of(folder, callback), cwd=folder).returncode == 0
    return folder


def _cut_evaluations(folder: Path, runs: _Runs) -> list[str]:
    """A run whose evaluations.csv lost the end of its last row (``800,42,-19`` of ``800,42,-1912.5,200``)."""
    argv = _evaluations_without_seeds(folder)
    (Path(argv[1]) / "evaluations.csv").write_text("step,seed,return,episode_length\n400,42,-1504.5,200\n800,42,-19")
    return argv


def _lost_metrics(folder: Path, runs: _Runs) -> list[str]:
    """The resumed run (at step 400) with its metrics.csv rows from step 150 on lost, resumed again."""
    shutil.copytree(runs["resumed"] / "runs", folder / "runs")
    metrics = folder / RUN / "metrics.csv"
    with open(metrics, newline="") as handle:
        reader = csv.DictReader(handle)
        rows, header = [row for row in reader if float(row["step"]) < 150], reader.fieldnames
    with open(metrics, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return ["fit", "--config", str(RUN / "config.yaml"), "--ckpt_path=last", "--data.max_timesteps=600"]


def _finished_without_heatmap(folder: Path, runs: _Runs) -> list[str]:
    """The connectivity run, killed (as it were) after its last checkpoint, before its heat-map; resumed."""
    shutil.copytree(runs["connectivity"] / "runs", folder / "runs")
    (folder / RUN / "connectivity_heatmap.png").unlink()
    return ["fit", "--config", str(RUN / "config.yaml"), "--ckpt_path=last"]


def _before_first_checkpoint(folder: Path, runs: _Runs) -> list[str]:
    """A run killed in its first seconds: its version folder has config.yaml and hparams.yaml, no checkpoint."""
    (folder / RUN).mkdir(parents=True)
    shutil.copy(_write_config(folder), folder / RUN / "config.yaml")
    (folder / RUN / "hparams.yaml").write_text("{}\n")
    return ["fit", "--config", str(RUN / "config.yaml"), "--ckpt_path=last"]


def _other_algorithm_forced(folder: Path, runs: _Runs) -> list[str]:
    last = runs["resumed"] / RUN / "checkpoints" / "last.ckpt"
    return _fit_of(
        folder,
        "--model=lightning_sparse_rl.TD3",
        f"--ckpt_path={last}",
        "--force_resume=true",
        "--data.max_timesteps=600",
    )


#: case → (the command in a folder, given it and the module's runs; its status; what it says; what is left)
SAID = {
    "a report of a cut row": (
        _cut_evaluations,
        2,
        "evaluations.csv, line 3: the row '800,42,-19' is incomplete (3 of 4 values, no line end)",
        lambda folder: not (folder / "report").exists(),
    ),
    "a resume after metrics rows were lost": (
        _lost_metrics,
        0,
        "-399 are missing (the file was cut or damaged) and stay missing",
        lambda folder: [row["step"] for row in _rows(folder / RUN / "evaluations.csv")] == ["200", "400", "600"],
    ),
    "a finished run without its end-of-training files": (
        _finished_without_heatmap,
        0,
        "is already at max_timesteps=200 (200 training steps); raise --data.max_timesteps to continue",
        lambda folder: (folder / RUN / "connectivity_heatmap.png").stat().st_size > 0,
    ),
    "a run killed before its first checkpoint": (
        _before_first_checkpoint,
        2,
        "never reached its first checkpoint (it has no checkpoints/last.ckpt), so there is nothing to resume. Start "
        "it again with: lsrl fit --config ",
        lambda folder: sorted(path.name for path in (folder / RUN).iterdir()) == ["config.yaml", "hparams.yaml"],
    ),
    "a refused forced resume of another algorithm": (
        _other_algorithm_forced,
        2,
        "does not fit this config's networks",
        lambda folder: not list(folder.glob("runs/*/version_*")),
    ),
}


@pytest.mark.parametrize("case", _cases(SAID))
def test_wrong_or_missing_data_is_said(case, tmp_path, request):
    """Cut or lost rows, missing end-of-training files, a run without a checkpoint, a refused resume: said, and
    nothing left half-made."""
    command, status, said, left = SAID[case]
    argv = command(tmp_path, _Runs(request))
    result = _run(*argv, cwd=tmp_path, timeout=300)
    assert result.returncode == status and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert said in result.stdout + result.stderr, result.stdout[-2000:] + result.stderr[-2000:]
    assert left(tmp_path)
