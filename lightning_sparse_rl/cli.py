"""``lsrl``: the command line.

``lsrl fit`` is LightningCLI (``lsrl fit --config configs/sac.yaml``); ``lsrl view``, ``lsrl export`` and
``lsrl plot`` work on what a run wrote.

This module sits at the edge: nothing in the package imports it except the tutorial-flag front
(:mod:`lightning_sparse_rl.main`), which translates the original flags into ``lsrl fit`` arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from lightning_sparse_rl.algorithms import OffPolicyAlgorithm
from lightning_sparse_rl.callbacks import EvaluationResults, RLProgressReporter, RunCheckpoints, RunStopped
from lightning_sparse_rl.checkpoint_io import RunCheckpointIO
from lightning_sparse_rl.datamodule import EnvDataModule

#: Trainer settings that make Lightning's loops fit RL (see README): epochs end on our env-step
#: budget, there is no sanity evaluation, and runs go to ``runs/`` with a CSV log by default.
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": -1,
    "num_sanity_val_steps": 0,
    "default_root_dir": "runs",
    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
}


class SparseRLCLI(LightningCLI):
    """LightningCLI wired for off-policy RL.

    * ``data.env_spec`` (made by the DataModule from the env) is linked into ``model.env_spec``;
    * ``seed_everything`` is linked into ``data.seed`` (one seed for torch, numpy, envs, buffer);
    * the :class:`RLProgressReporter`, :class:`EvaluationResults` and :class:`RunCheckpoints` callbacks are
      always present, configurable as ``progress.*``, ``results.*`` and ``checkpoints.*``;
    * checkpoints are written by :class:`~lightning_sparse_rl.checkpoint_io.RunCheckpointIO` (atomic files,
      replay buffer in a side file);
    * ``--config RUN_DIR/config.yaml --ckpt_path last`` resumes that run: ``RUN_DIR/checkpoints/last.ckpt``,
      with its loggers continuing in ``RUN_DIR``.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the links and the always-on progress callback."""
        parser.link_arguments("data.env_spec", "model.init_args.env_spec", apply_on="instantiate")
        parser.link_arguments("seed_everything", "data.seed")
        parser.add_lightning_class_args(RLProgressReporter, "progress")
        parser.add_lightning_class_args(EvaluationResults, "results")
        parser.add_lightning_class_args(RunCheckpoints, "checkpoints")

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path last`` to the run directory of the ``--config`` file (see the class docs)."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is None or config.get("ckpt_path") != "last":
            return
        run_dirs = [Path(str(path)).resolve().parent for path in config.get("config") or []]
        found = [d for d in run_dirs if (d / "checkpoints" / "last.ckpt").exists()]
        if not found:
            where = ", ".join(str(d / "checkpoints" / "last.ckpt") for d in run_dirs) or "(no --config given)"
            raise ValueError(
                f"--ckpt_path last: no checkpoint at {where}. Pass the run's own config "
                "(runs/NAME/version_N/config.yaml) or the path of a checkpoint."
            )
        run_dir = found[-1]
        config["ckpt_path"] = str(run_dir / "checkpoints" / "last.ckpt")
        version = re.fullmatch(r"version_(\d+)", run_dir.name)
        loggers = config["trainer"].get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if version and init_args is not None and "version" in init_args:
                init_args["version"] = int(version[1])  # CSV / TensorBoard logs continue in RUN_DIR

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer, reading and writing checkpoints with :class:`RunCheckpointIO` (unless configured otherwise)."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = RunCheckpointIO()
        # RunCheckpoints after every callback that changes the state at a step's end, before ModelCheckpoint.
        ours = [c for c in trainer.callbacks if isinstance(c, RunCheckpoints)]
        last = [c for c in trainer.callbacks if isinstance(c, Checkpoint)]
        others = [c for c in trainer.callbacks if c not in ours and c not in last]
        trainer.callbacks = others + ours + last
        return trainer


def build_cli(args: ArgsType = None, run: bool = True) -> SparseRLCLI:
    """Parse ``args`` (``sys.argv[1:]`` when ``None``) and, with ``run``, execute the subcommand."""
    return SparseRLCLI(
        OffPolicyAlgorithm,
        EnvDataModule,
        subclass_mode_model=True,
        seed_everything_default=42,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def view(argv: Sequence[str]) -> None:
    """``lsrl view PATH``: watch deterministic episodes of a trained agent (window or video file)."""
    parser = argparse.ArgumentParser(prog="lsrl view", description=view.__doc__)
    parser.add_argument("path", help="an exported policy (.pt) or a checkpoint (.ckpt) of lsrl fit")
    parser.add_argument("--record", metavar="VIDEO", help="write a video (.mp4 or .gif) instead of opening a window")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="env seed")
    parser.add_argument("--random-actions", action="store_true", help="uniformly random actions, for comparison")
    parser.add_argument("--width", type=int, default=480, help="video width (pixels)")
    parser.add_argument("--height", type=int, default=360, help="video height (pixels)")
    args = parser.parse_args(argv)
    from lightning_sparse_rl.policy import load_policy
    from lightning_sparse_rl.viewer import (
        VIDEO_SUFFIXES,
        frames_per_second,
        play_episodes,
        use_headless_rendering,
        write_video,
    )

    if args.record and not args.record.endswith(VIDEO_SUFFIXES):
        parser.error(f"--record {args.record}: the video file must end in one of {VIDEO_SUFFIXES}")
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes} must be >= 1")
    if not args.record and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        parser.error("no display to open a window on: record a video instead, e.g. --record agent.mp4")
    policy = load_policy(args.path)
    nonzero, total = policy.connections()
    print(
        f"{policy.algorithm} on {policy.env_spec.env_id}: {policy.input_features.input_dim} inputs, "
        f"actor with {nonzero}/{total} non-zero weights ({100 * (1 - nonzero / total):.1f}% sparse)"
    )
    if args.record:
        use_headless_rendering()
        mode = "rgb_array"
    else:
        print("A MuJoCo window opens; press TAB to make the camera track the agent.")
        mode = "human"
    records = play_episodes(
        policy, args.episodes, args.seed, mode, args.random_actions, width=args.width, height=args.height
    )
    for i, record in enumerate(records):
        print(f"Episode {i}: return {record.episode_return:.1f}, {record.length} steps")
    if args.record:
        frames = [frame for record in records for frame in record.frames]
        write_video(frames, args.record, frames_per_second(policy.env_spec.env_id))
        print(f"Wrote {len(frames)} frames to {args.record}")


def export(argv: Sequence[str]) -> None:
    """``lsrl export CHECKPOINT POLICY``: write a trained agent's small policy file."""
    parser = argparse.ArgumentParser(prog="lsrl export", description=export.__doc__)
    parser.add_argument("checkpoint", help="a checkpoint (.ckpt) of lsrl fit")
    parser.add_argument("policy", help="the policy file to write (.pt)")
    args = parser.parse_args(argv)
    from lightning_sparse_rl.policy import load_policy

    load_policy(args.checkpoint).save(args.policy)
    print(f"Wrote {args.policy}")


def plot(argv: Sequence[str]) -> None:
    """``lsrl plot RUN_DIR...``: PNG plots of learning curves, input connectivity and sparsity distributions."""
    parser = argparse.ArgumentParser(prog="lsrl plot", description=plot.__doc__)
    parser.add_argument(
        "runs", nargs="*", help="run directories (runs/NAME/version_N); runs with the same NAME are seeds of one group"
    )
    parser.add_argument("--out", default="plots", help="folder for the PNG files")
    parser.add_argument("--layers", help="layer sizes of one network, e.g. 17,256,256,6: compare uniform / ER / new")
    parser.add_argument("--global-sparsity", type=float, default=0.9, help="for --layers")
    parser.add_argument("--input-layer-sparsity", type=float, default=-1.0, help="for --layers")
    args = parser.parse_args(argv)
    if not args.runs and not args.layers:
        parser.error("give run directories, --layers, or both")
    from pathlib import Path

    from lightning_sparse_rl.plots import plot_connectivity, plot_learning_curves, plot_sparsity_distribution
    from lightning_sparse_rl.run_files import read_csv_columns

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    returns: dict[str, list] = {}
    connectivity: dict[str, tuple[list, list]] = {}
    for run in map(Path, args.runs):
        if not (run / "evaluations.csv").exists():
            parser.error(f"{run} has no evaluations.csv: not a run directory of lsrl fit")
        group = run.parent.name if run.name.startswith("version_") else run.name
        evaluations = read_csv_columns(run / "evaluations.csv")
        returns.setdefault(group, []).append((evaluations["step"], evaluations["return"]))
        if (run / "connectivity.csv").exists():
            columns = read_csv_columns(run / "connectivity.csv")
            real, noise = connectivity.setdefault(group, ([], []))
            real.append((columns["step"], columns["actor/real"]))
            noise.append((columns["step"], columns["actor/noise"]))
    written = []
    if returns:
        plot_learning_curves(returns, out / "learning_curves.png")
        written.append(out / "learning_curves.png")
    if connectivity:
        plot_connectivity(connectivity, out / "connectivity.png")
        written.append(out / "connectivity.png")
    if args.layers:
        try:
            sizes = [int(size) for size in args.layers.split(",")]
        except ValueError:
            parser.error(f"--layers {args.layers}: give comma-separated integers, e.g. 17,256,256,6")
        plot_sparsity_distribution(
            sizes, args.global_sparsity, out / "sparsity_distribution.png", args.input_layer_sparsity
        )
        written.append(out / "sparsity_distribution.png")
    for path in written:
        print(f"Wrote {path}")


#: ``lsrl`` subcommands that are not LightningCLI's.
TOOLS = {"view": view, "export": export, "plot": plot}


def main(args: ArgsType = None) -> None:
    """Console-script entry point of ``lsrl``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in TOOLS:
        TOOLS[argv[0]](argv[1:])
        return
    # Lightning advertises its hosted services on every run; not useful to our users.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    try:
        build_cli(args)
    except RunStopped as stop:
        print(stop, flush=True)


if __name__ == "__main__":
    main()
