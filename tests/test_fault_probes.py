"""The held-out fault probes of issue 30, one table per group, through the real ``lsrl`` command.

1. a resumed run's ``config.yaml`` describes the run, not the resume; 2. ``lsrl export`` is atomic and its
failures are one line; 3. sweep settings and ``--trainer.default_root_dir`` stay inside their folder; 4. huge
or hostile inputs are refused in one line within seconds; 5. more one-line errors; 6. wrong or missing data
is reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_run_safety import RUN, _run, _write_config

# --------------------------------------------------------------------------- 1. config.yaml after a resume


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
