"""Our trainer in a benchmark: a real ``lsrl fit`` of a shipped config, patched for timing.

The config under ``configs/`` runs as users run it (progress bar, CSV logger, checkpointing, the always-on
callbacks), with the benchmark's batch size, warm-up and step budget, and a :class:`ThroughputClock`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class ThroughputClock(Callback):
    """Writes training env steps/s over this fit's train steps ``(skip, skip + steps]`` to ``out`` (JSON).

    Steps count from where the fit starts: from 0 in a new run, from the checkpoint's step in a resumed one.
    """

    def __init__(self, skip: int, steps: int, out: str) -> None:
        self.skip, self.steps, self.out = skip, steps, out
        self._start = 0.0
        self._first: int | None = None  # train step before this fit's first batch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Start the clock after ``skip`` steps; stop it and write the rate after ``skip + steps``."""
        if self._first is None:
            self._first = batch.train_step - 1
        if batch.train_step - self._first == self.skip:
            self._start = time.perf_counter()
        elif batch.train_step - self._first == self.skip + self.steps:
            rate = self.steps / (time.perf_counter() - self._start)
            Path(self.out).write_text(json.dumps({"steps_per_s": rate, "first_update": self._first + self.skip}))


def patched_config(
    config: str,
    batch_size: int,
    learning_starts: int,
    skip: int,
    steps: int,
    seed: int,
    accelerator: str,
    root: str,
    out: str | None,
    sparsity: dict[str, Any] | None,
    model_args: dict[str, Any],
    agents: int = 1,
    precision: str | None = None,
    start: int = 0,
) -> dict[str, Any]:
    """``configs/<config>.yaml`` with the benchmark's settings and a :class:`ThroughputClock` (unless ``out`` is None).

    ``agents > 1`` trains a population (seeds ``seed … seed + agents − 1``); ``precision`` is the trainer's;
    ``start`` is the train step of the checkpoint the fit resumes (the run ends, with one evaluation, at
    ``start + skip + steps``).
    """
    cfg = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    cfg["seed_everything"] = seed
    if agents > 1:
        cfg["seeds"] = list(range(seed, seed + agents))
    cfg["model"]["init_args"].update(model_args)
    cfg["data"].update(
        batch_size=batch_size,
        start_timesteps=learning_starts,
        max_timesteps=start + skip + steps,
        eval_freq=start + skip + steps,
        eval_episodes=1,
    )
    trainer = cfg["trainer"]
    trainer.update(accelerator=accelerator, default_root_dir=root)
    if precision is not None:
        trainer["precision"] = precision
    for logger in trainer.get("logger", []):
        logger["init_args"]["save_dir"] = root
    for callback in trainer["callbacks"]:
        if sparsity and callback["class_path"].endswith("SparsityDistributionCallback"):
            callback["init_args"].update(sparsity)
    if out is not None:
        clock = {"skip": skip, "steps": steps, "out": out}
        trainer["callbacks"].append({"class_path": "lsrl_runner.ThroughputClock", "init_args": clock})
    return cfg


def run(
    config: str,
    batch_size: int,
    learning_starts: int,
    skip: int,
    steps: int,
    seed: int,
    device: str,
    sparsity: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    agents: int = 1,
    precision: str | None = None,
    state: tuple[str, int] | None = None,
) -> float:
    """``lsrl fit`` of the patched ``config``; returns the clock's env steps/s (of each agent).

    ``state`` ``(checkpoint, train step)`` resumes that checkpoint (forced: the timing run's precision and
    evaluation period may differ from the run that wrote it) and times the steps after it.
    """
    from lightning_sparse_rl.cli import build_cli

    with tempfile.TemporaryDirectory() as root:
        out = str(Path(root) / "rate.json")
        accelerator = "gpu" if device.startswith("cuda") else "cpu"
        cfg = patched_config(
            config,
            batch_size,
            learning_starts,
            skip,
            steps,
            seed,
            accelerator,
            root,
            out,
            sparsity,
            model_args or {},
            agents,
            precision,
            state[1] if state else 0,
        )
        path = Path(root) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        resume = ["--ckpt_path", state[0], "--force_resume", "true"] if state else []
        build_cli(["fit", "--config", str(path), *resume])
        return json.loads(Path(out).read_text())["steps_per_s"]


def make_state(
    config: str, batch_size: int, learning_starts: int, seed: int, agents: int, updates: list[int], folder: str
) -> dict[int, str]:
    """Train ``config`` to each of ``updates`` (ascending) in turn; the ``last.ckpt`` written at each.

    One run, resumed from one stop to the next (``folder/<updates>/``): weights, optimizer moments, masks and
    replay buffer as a user's run holds them that many updates in. Precision fp32, evaluation at each stop.
    """
    from lightning_sparse_rl.cli import build_cli

    checkpoints: dict[int, str] = {}
    previous: int | None = None
    for target in updates:
        root = Path(folder) / str(target)
        done = 0 if previous is None else previous
        cfg = patched_config(
            config,
            batch_size,
            learning_starts,
            target - done,
            0,
            seed,
            "cpu",
            str(root),
            None,
            None,
            {},
            agents,
            start=done,
        )
        path = root / "config.yaml"
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg))
        resume = [] if previous is None else ["--ckpt_path", checkpoints[previous], "--force_resume", "true"]
        build_cli(["fit", "--config", str(path), *resume])
        checkpoints[target] = str(next(root.glob("*/version_*/checkpoints/last.ckpt")))
        previous = target
    return checkpoints
