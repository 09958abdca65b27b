"""Where one training step of ``lsrl fit`` spends its time: a ``torch.profiler`` summary.

Runs a real ``lsrl fit`` of a shipped config (as :mod:`throughput` does: batch 256, HalfCheetah-v5), profiles
``--steps`` training steps after ``--skip`` and prints milliseconds per env step by category: matrix
products (GEMMs), the optimizer, other tensor operators (elementwise, reductions, copies), MuJoCo's
``env.step``, and the rest (Python: Lightning's loop and hooks, autograd's engine, our own code), then the
operators with the most self time.

Usage: ``python benchmarks/profile_step.py [--config sac] [--threads 1] [--steps 300] [--compile] [--agents 8]
[--precision bf16-mixed]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.profiler import ProfilerActivity, profile, record_function

GEMM_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul")
OPTIMIZER_OPS = ("aten::_fused_adam_", "aten::_fused_adamw_", "aten::_foreach_", "aten::_fused_sgd_")


def categorise(events: Any, steps: int, wall_s: float) -> dict[str, float]:
    """Milliseconds per step by category from the profiler's key averages (self CPU time)."""
    per_step = {"GEMM (matrix products)": 0.0, "optimizer (Adam)": 0.0, "other tensor ops": 0.0, "env.step": 0.0}
    for event in events:
        ms = event.self_cpu_time_total / 1e3 / steps
        if event.key == "env.step":
            per_step["env.step"] += event.cpu_time_total / 1e3 / steps
        elif event.key.startswith(GEMM_OPS):
            per_step["GEMM (matrix products)"] += ms
        elif event.key.startswith(OPTIMIZER_OPS):
            per_step["optimizer (Adam)"] += ms
        elif event.key.startswith("aten::"):
            per_step["other tensor ops"] += ms
    total = 1e3 * wall_s / steps
    per_step["Python: Lightning, autograd engine, our code"] = total - sum(per_step.values())
    per_step["total"] = total
    return per_step


class StepProfiler(Callback):
    """Times training steps ``(skip, skip + steps]`` by phase, profiles the next ``steps`` operator by operator.

    Phases (wall clock, no profiler): ``training_step`` (the update, with Lightning's optimizer and backward
    wrappers) and everything between two training steps (the env step with the policy's action, storing
    it, sampling the minibatch, Lightning's loop and hooks). Then ``torch.profiler`` attributes the time of
    the following steps to operators; it slows them down, so only its shares are reported.
    """

    def __init__(self, skip: int, steps: int, out: str, rows: int = 15) -> None:
        self.skip, self.steps, self.out, self.rows = skip, steps, out, rows
        self._profile: profile | None = None
        self._marks: dict[str, float] = {}
        self._phases = {"training_step": 0.0, "between steps": 0.0}
        self._summary: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Label MuJoCo's steps (of every agent's env) in the profile."""
        for env in trainer.datamodule.runner.train_envs:

            def labelled_step(action: Any, step: Any = env.step) -> Any:
                with record_function("env.step"):
                    return step(action)

            env.step = labelled_step

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Close the "between steps" interval and open the ``training_step`` one."""
        now = time.perf_counter()
        if self.skip < batch.train_step <= self.skip + self.steps:
            self._phases["between steps"] += now - self._marks["end"]
        self._marks["start"] = now

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Accumulate the phases; switch to the operator profile after ``skip + steps``; report at the end."""
        now = time.perf_counter()
        if self.skip < batch.train_step <= self.skip + self.steps:
            self._phases["training_step"] += now - self._marks["start"]
        if batch.train_step == self.skip + self.steps:
            wall = now - self._marks["clock"]
            ms = {name: 1e3 * s / self.steps for name, s in self._phases.items()}
            print(f"\nms per env step, {self.steps} steps, {torch.get_num_threads()} thread(s), wall clock:")
            for name, value in {**ms, "total": 1e3 * wall / self.steps}.items():
                print(f"  {name:<48}{value:8.3f}")
            self._summary["wall_ms_per_step"] = {**ms, "total": 1e3 * wall / self.steps}
            self._profile = profile(activities=[ProfilerActivity.CPU])
            self._profile.__enter__()
            self._marks["clock"] = time.perf_counter()
        elif batch.train_step == self.skip:
            self._marks["clock"] = now
        elif batch.train_step == self.skip + 2 * self.steps and self._profile is not None:
            wall = now - self._marks["clock"]
            self._profile.__exit__(None, None, None)
            events = self._profile.key_averages()
            shares = categorise(events, self.steps, wall)
            total = shares.pop("total")
            print(f"\nshare of a step by category (torch.profiler, {self.steps} steps):")
            for name, value in shares.items():
                print(f"  {name:<48}{100 * value / total:6.1f} %")
            print(events.table(sort_by="self_cpu_time_total", row_limit=self.rows))
            self._summary["profiled_share"] = {name: value / total for name, value in shares.items()}
            Path(self.out).write_text(json.dumps(self._summary, indent=2))
        self._marks["end"] = time.perf_counter()


def main() -> None:
    """Run the profiled fit."""
    import lsrl_runner

    from lightning_sparse_rl.cli import build_cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="sac", help="a config under configs/ (sac, td3, anf_sac, ...)")
    parser.add_argument(
        "--sparsity",
        default=None,
        help="SparsityDistributionCallback overrides as JSON, e.g. '{\"global_sparsity\": 0.9}'",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compile", action="store_true", help="model.compile: true")
    parser.add_argument("--agents", type=int, default=1, help="a population of this many agents")
    parser.add_argument("--precision", default=None, help="the trainer's precision, e.g. bf16-mixed")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        out = args.json or str(Path(root) / "profile.json")
        sparsity = json.loads(args.sparsity) if args.sparsity else None
        model_args = {"compile": True} if args.compile else {}
        cfg = lsrl_runner.patched_config(
            args.config,
            256,
            5000,
            args.skip,
            2 * args.steps,
            0,
            "cpu",
            root,
            out,
            sparsity,
            model_args,
            args.agents,
            args.precision,
        )
        callbacks = cfg["trainer"]["callbacks"]
        profiler = {"skip": args.skip, "steps": args.steps, "out": out}
        callbacks[-1] = {"class_path": "profile_step.StepProfiler", "init_args": profiler}
        path = Path(root) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        build_cli(["fit", "--config", str(path)])


if __name__ == "__main__":
    main()
