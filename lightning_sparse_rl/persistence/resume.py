"""Resuming a run: which checkpoint ``--ckpt_path`` names, whether it may be resumed, and the run's resume history.

``lsrl fit --ckpt_path`` resumes as a transaction: the checkpoint is verified and the given config compared with
the recorded one (:func:`check_resume`) before anything in a run folder changes. ``--ckpt_path last`` with
``--config RUN_DIR/config.yaml`` resumes ``RUN_DIR/checkpoints/last.ckpt`` in place (:func:`resume_target`), with
the run's loggers continuing in ``RUN_DIR`` (:func:`continue_loggers_in`). The settings a resume changed are
appended to ``RUN_DIR/resumes.yaml`` (:func:`record_resume`).

These are plain functions of paths, checkpoints and configs (as YAML text or the parsed config's entries);
``lsrl fit`` (``cli/fit.py``) parses the command line and calls them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import CSVLogger as LightningCSVLogger

from lightning_sparse_rl.data.datamodule import EnvDataModule
from lightning_sparse_rl.lightning_internals import datamodule_state_key, evaluation_pending
from lightning_sparse_rl.loggers import CSVLogger
from lightning_sparse_rl.persistence.checkpoint_io import check_side_files, read_checkpoint
from lightning_sparse_rl.persistence.config_changes import ConfigChange, config_changes
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.validation import UserInputError, class_at

#: The file that lists a run's resumes and the settings they changed.
RESUME_HISTORY = "resumes.yaml"


class RunFinished(Exception):
    """A resumed run has already reached its ``max_timesteps``: nothing to train."""


@dataclass
class ResumePlan:
    """A resume that passed its checks: the verified checkpoint, its step, the run folder when it continues in place.

    ``run_config`` is the config as YAML without what makes it a resume (``ckpt_path``, ``force_resume``, the
    logger's version folder): what ``config.yaml`` and the checkpoints record, so that ``lsrl fit --config
    RUN_DIR/config.yaml`` repeats the run instead of continuing it. ``finished``: for a run already at its
    ``max_timesteps`` resumed in place, what to say once its end-of-training hooks have run again (they write
    files such as ``connectivity_heatmap.png`` that a kill after the last checkpoint left unwritten).
    """

    checkpoint: Path
    train_steps: int
    run_dir: Path | None
    changes: list[ConfigChange]
    run_config: str
    finished: str | None = None


def resume_target(ckpt_path: str, config_files: Sequence[str]) -> tuple[Path, Path | None]:
    """The checkpoint ``--ckpt_path`` names, and the run folder when the run continues in place (``last``).

    ``config_files``: the ``--config`` files given; with ``--ckpt_path last``, the last of them that lies in a run
    folder with a ``checkpoints/last.ckpt`` names the run.

    Raises:
        FileNotFoundError: no such checkpoint file; for ``last``, no run folder with a ``last.ckpt`` (the message
            says how to start again a run that never reached its first checkpoint).

    """
    if ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
        return path, None
    resolved = [Path(file).resolve() for file in config_files]
    run_dirs = [file.parent for file in resolved]
    found = [d for d in run_dirs if (d / "checkpoints" / "last.ckpt").exists()]
    unstarted = _run_without_checkpoint(resolved)
    if unstarted is not None and not found:
        raise FileNotFoundError(
            f"--ckpt_path last: the run in {unstarted} never reached its first checkpoint (it has no "
            "checkpoints/last.ckpt), so there is nothing to resume. Start it again with: lsrl fit --config "
            f"{unstarted / 'config.yaml'} (it makes a new version folder; {unstarted} can be removed)"
        )
    if not found:
        where = ", ".join(str(d / "checkpoints" / "last.ckpt") for d in run_dirs) or "(no --config given)"
        raise FileNotFoundError(
            f"--ckpt_path last: no checkpoint at {where}. Pass the run's own config "
            "(runs/NAME/version_N/config.yaml) or the path of a checkpoint."
        )
    return found[-1] / "checkpoints" / "last.ckpt", found[-1]


def _run_without_checkpoint(config_files: list[Path]) -> Path | None:
    """The run folder of a given ``RUN_DIR/config.yaml`` (``.../version_N``) that holds no ``last.ckpt``, if any."""
    for file in reversed(config_files):
        run_dir = file.parent
        if file.name == "config.yaml" and re.fullmatch(r"version_\d+", run_dir.name):
            if not (run_dir / "checkpoints" / "last.ckpt").exists():
                return run_dir
    return None


def check_resume(
    path: Path,
    run_dir: Path | None,
    *,
    given_config: str,
    config_state: str,
    weights_only: bool | None,
    force_resume: bool,
    max_timesteps: int,
) -> ResumePlan:
    """Check a resume of checkpoint ``path`` before anything is created or written; print the settings it changes.

    Args:
        path: the checkpoint.
        run_dir: the run folder, when the run continues in place (``--ckpt_path last``).
        given_config: the config given for the resume, as YAML (as the parser dumps it).
        config_state: the key of the callback state in which a checkpoint records its run's config.
        weights_only: how the checkpoint is loaded (``None``: as :func:`read_checkpoint` chooses).
        force_resume: resume even when the given config changes keys that define the checkpoint.
        max_timesteps: the given ``data.max_timesteps``.

    Returns:
        the plan, its ``run_config`` still empty (the caller dumps the config without the resume's arguments).

    Raises:
        CheckpointDamaged: the checkpoint's bytes differ from its recorded checksum, or its replay-buffer
            file is missing or of the wrong size.
        UserInputError: the given config changes keys that define the checkpoint (without ``force_resume``),
            the checkpoint holds objects that ``weights_only`` loading refuses, or it is not a checkpoint of
            ``lsrl fit`` (a plain Lightning checkpoint).
        RunFinished: the checkpoint is already at ``max_timesteps`` (with its last evaluation done) and would be
            resumed in a new folder (in place, the plan's ``finished`` says so after its fit, which trains
            nothing and runs the end-of-training hooks again).

    """
    checkpoint = read_checkpoint(path, weights_only=weights_only)
    datamodule_key = datamodule_state_key(EnvDataModule)
    if datamodule_key not in checkpoint:
        raise UserInputError(
            f"{path} is not a checkpoint of lsrl fit (it holds no {EnvDataModule.__qualname__} state: no envs, "
            "replay buffer or step counters to resume); start a new run without --ckpt_path"
        )
    check_side_files(path, checkpoint)
    recorded = checkpoint.get("callbacks", {}).get(config_state, {}).get("config")
    changes = []
    if recorded is None:
        print(f"Note: {path} records no lsrl config; the given config was not compared with it.", flush=True)
    else:
        changes = config_changes(yaml.safe_load(recorded), yaml.safe_load(given_config))
    refused = [change for change in changes if change.protected]
    if refused and not force_resume:
        raise UserInputError(
            f"cannot resume {path} with this config: "
            + "; ".join(map(str, refused))
            + ". These keys define what the checkpoint holds; start a new run, or pass --force_resume true"
        )
    train_steps = int(checkpoint.get(datamodule_key, {}).get("train_steps", 0))
    finished = None
    if train_steps >= max_timesteps and not evaluation_pending(checkpoint):
        finished = (
            f"{path} is already at max_timesteps={max_timesteps} ({train_steps} training steps); "
            "raise --data.max_timesteps to continue"
        )
        if run_dir is None:
            raise RunFinished(finished)
    for change in [] if finished else changes:
        print(f"Resuming with a changed setting{' (forced)' if change.protected else ''}: {change}", flush=True)
    return ResumePlan(path, train_steps, run_dir, changes, "", finished)


def continue_loggers_in(loggers: Any, run_dir: Path, train_steps: int) -> None:
    """Point the config's CSV/TensorBoard loggers at ``run_dir`` from any working directory (CSV: ours).

    ``loggers``: the parsed config's ``trainer.logger`` (one entry or a list; entries with ``class_path`` and
    ``init_args``), changed in place. TensorBoard hides the events a crashed run wrote after ``train_steps``
    (``purge_step``).
    """
    version = re.fullmatch(r"version_(\d+)", run_dir.name)
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        cls = class_at(str(getattr(logger, "class_path", "")))
        if init_args is not None and isinstance(cls, type) and issubclass(cls, TensorBoardLogger):
            init_args["purge_step"] = train_steps  # a SummaryWriter argument, passed on by TensorBoardLogger
        if not (version and init_args is not None and isinstance(cls, type)):
            continue
        if issubclass(cls, (LightningCSVLogger, TensorBoardLogger)):
            init_args["version"] = int(version[1])
            name = init_args.get("name") or ""
            if (Path(str(init_args.get("save_dir"))) / name / run_dir.name).resolve() != run_dir:
                # resumed from another working directory: RUN_DIR = save_dir[/name]/version_N
                init_args["save_dir"] = str(run_dir.parent.parent if name else run_dir.parent)
                if name:
                    init_args["name"] = run_dir.parent.name
        if cls is LightningCSVLogger:
            logger.class_path = f"{CSVLogger.__module__}.{CSVLogger.__qualname__}"


def record_resume(run_dir: Path, plan: ResumePlan) -> None:
    """Append the resume to ``run_dir/resumes.yaml`` (atomically): its checkpoint, step and changed settings.

    A resume in place that changed nothing continues the checkpoint's run: nothing is recorded.
    """
    if plan.run_dir is not None and not plan.changes:
        return
    history_file = run_dir / RESUME_HISTORY
    history = yaml.safe_load(history_file.read_text()) if history_file.exists() else None
    entry = {
        "checkpoint": str(plan.checkpoint),
        "train_steps": plan.train_steps,
        "changes": {
            change.key: {"saved": change.saved, "given": change.given, "forced": change.protected}
            for change in plan.changes
        },
    }
    text = yaml.safe_dump([*(history or []), entry], sort_keys=False, allow_unicode=True)
    atomic_write_bytes(history_file, text.encode())
