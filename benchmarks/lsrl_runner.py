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
    """Writes training env steps/s over train steps ``(skip, skip + steps]`` to ``out`` (JSON)."""

    def __init__(self, skip: int, steps: int, out: str) -> None:
        self.skip, self.steps, self.out = skip, steps, out
        self._start = 0.0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Start the clock after ``skip`` steps; stop it and write the rate after ``skip + steps``."""
        if batch.train_step == self.skip:
            self._start = time.perf_counter()
        elif batch.train_step == self.skip + self.steps:
            rate = self.steps / (time.perf_counter() - self._start)
            Path(self.out).write_text(json.dumps({"steps_per_s": rate}))


def patched_config(
    config: str,
    batch_size: int,
    learning_starts: int,
    skip: int,
    steps: int,
    seed: int,
    accelerator: str,
    root: str,
    out: str,
    sparsity: dict[str, Any] | None,
    model_args: dict[str, Any],
    agents: int = 1,
    precision: str | None = None,
) -> dict[str, Any]:
    """``configs/<config>.yaml`` with the benchmark's settings and a :class:`ThroughputClock`.

    ``agents > 1`` trains a population (seeds ``seed … seed + agents − 1``); ``precision`` is the trainer's.
    """
    cfg = yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())
    cfg["seed_everything"] = seed
    if agents > 1:
        cfg["seeds"] = list(range(seed, seed + agents))
    cfg["model"]["init_args"].update(model_args)
    cfg["data"].update(
        batch_size=batch_size,
        start_timesteps=learning_starts,
        max_timesteps=skip + steps,
        eval_freq=skip + steps,
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
) -> float:
    """``lsrl fit`` of the patched ``config``; returns the clock's env steps/s (of each agent)."""
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
        )
        path = Path(root) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        build_cli(["fit", "--config", str(path)])
        return json.loads(Path(out).read_text())["steps_per_s"]
