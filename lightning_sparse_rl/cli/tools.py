"""``lsrl view``, ``export``, ``plot`` and ``report``: tools that work on what runs wrote; ``lsrl configs``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lightning_sparse_rl import shipped_configs
from lightning_sparse_rl.cli.errors import ToolParser
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes


def view(argv: Sequence[str]) -> None:
    """``lsrl view PATH``: deterministic episodes of a trained agent (a window, a video file, or only returns)."""
    parser = ToolParser(prog="lsrl view", description=view.__doc__)
    parser.add_argument("path", help="an exported policy (.pt) or a checkpoint (.ckpt) of lsrl fit")
    parser.add_argument("--record", metavar="VIDEO", help="write a video (.mp4 or .gif) instead of opening a window")
    parser.add_argument(
        "--no-render", action="store_true", help="no window and no video: print each episode's return, mean and sd"
    )
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="env seed")
    parser.add_argument(
        "--agent",
        type=int,
        metavar="SEED",
        help="the agent of this seed of a population (default: the best at the last evaluation)",
    )
    parser.add_argument("--random-actions", action="store_true", help="uniformly random actions, for comparison")
    parser.add_argument("--width", type=int, default=480, help="video width (pixels)")
    parser.add_argument("--height", type=int, default=360, help="video height (pixels)")
    args = parser.parse_args(argv)
    import numpy as np

    from lightning_sparse_rl.data.episodes import play_episodes
    from lightning_sparse_rl.policy_files import load_policy
    from lightning_sparse_rl.video import VIDEO_SUFFIXES, frames_per_second, use_headless_rendering, write_video

    if args.record and not args.record.endswith(VIDEO_SUFFIXES):
        parser.error(f"--record {args.record}: the video file must end in one of {VIDEO_SUFFIXES}")
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes} must be >= 1")
    if args.no_render and args.record:
        parser.error("--no-render and --record exclude each other")
    if not (args.record or args.no_render) and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        parser.error("no display to open a window on: record a video instead, e.g. --record agent.mp4")
    policy = load_policy(args.path, args.agent)
    nonzero, total = policy.connections()
    agent = f" (agent of seed {policy.seed})" if policy.seed is not None else ""
    print(
        f"{policy.algorithm}{agent} on {policy.env_spec.env_id}: {policy.input_features.input_dim} inputs, "
        f"actor with {nonzero}/{total} non-zero weights ({100 * (1 - nonzero / total):.1f}% sparse)"
    )
    if args.no_render:
        mode = None
    elif args.record:
        use_headless_rendering()
        mode = "rgb_array"
    else:
        print("A MuJoCo window opens; press TAB to make the camera track the agent.")
        mode = "human"
    records = play_episodes(
        policy.env_spec,
        policy.act_numpy,
        args.episodes,
        args.seed,
        mode,
        args.random_actions,
        width=args.width,
        height=args.height,
    )
    for i, record in enumerate(records):
        print(f"Episode {i}: return {record.episode_return:.1f}, {record.length} steps")
    if len(records) > 1:
        returns = np.array([record.episode_return for record in records])
        print(f"Return over {len(records)} episodes: {returns.mean():.1f} ± {returns.std(ddof=1):.1f} (mean ± sd)")
    if args.record:
        frames = [frame for record in records for frame in record.frames]
        write_video(frames, args.record, frames_per_second(policy.env_spec.env_id))
        print(f"Wrote {len(frames)} frames to {args.record}")


def export(argv: Sequence[str]) -> None:
    """``lsrl export CHECKPOINT POLICY``: write a trained agent's small policy file (atomically, as checkpoints)."""
    parser = ToolParser(prog="lsrl export", description=export.__doc__)
    parser.add_argument("checkpoint", help="a checkpoint (.ckpt) of lsrl fit")
    parser.add_argument("policy", help="the policy file to write (.pt)")
    parser.add_argument(
        "--seed", type=int, help="the agent of this seed of a population (default: the best at the last evaluation)"
    )
    args = parser.parse_args(argv)
    if Path(args.policy).is_dir():
        parser.error(
            f"{args.policy} is a folder: give the policy file to write, e.g. {Path(args.policy) / 'policy.pt'}"
        )
    from lightning_sparse_rl.policy_files import load_policy

    policy = load_policy(args.checkpoint, args.seed)
    policy.save(args.policy)
    print(f"Wrote {args.policy} (the agent of seed {policy.seed})")


def plot(argv: Sequence[str]) -> None:
    """``lsrl plot RUN_DIR...``: PNG plots of learning curves, input connectivity and sparsity distributions."""
    parser = ToolParser(prog="lsrl plot", description=plot.__doc__)
    parser.add_argument(
        "runs",
        nargs="*",
        help="run directories (runs/NAME/version_N); runs with the same NAME, and the agents of a population, are "
        "seeds of one group",
    )
    parser.add_argument("--out", default="plots", help="folder for the PNG files")
    parser.add_argument("--layers", help="layer sizes of one network, e.g. 17,256,256,6: compare uniform / ER / new")
    parser.add_argument("--global-sparsity", type=float, default=0.9, help="for --layers")
    parser.add_argument("--input-layer-sparsity", type=float, default=-1.0, help="for --layers")
    args = parser.parse_args(argv)
    if not args.runs and not args.layers:
        parser.error("give run directories, --layers, or both")
    import numpy as np

    from lightning_sparse_rl.persistence.run_files import EVALUATION_COLUMNS, read_csv_columns
    from lightning_sparse_rl.plots import plot_connectivity, plot_learning_curves, plot_sparsity_distribution

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    returns: dict[str, list] = {}
    connectivity: dict[str, tuple[list, list]] = {}
    for run in map(Path, args.runs):
        if not (run / "evaluations.csv").exists():
            parser.error(f"{run} has no evaluations.csv: not a run directory of lsrl fit")
        group = run.parent.name if run.name.startswith("version_") else run.name
        evaluations = read_csv_columns(run / "evaluations.csv", EVALUATION_COLUMNS)
        for seed in np.unique(evaluations["seed"]):  # each agent of a population is a seed of the group
            rows = evaluations["seed"] == seed
            returns.setdefault(group, []).append((evaluations["step"][rows], evaluations["return"][rows]))
        if (run / "connectivity.csv").exists():
            columns = read_csv_columns(run / "connectivity.csv", ["step", "actor/real", "actor/noise"])
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


def report(argv: Sequence[str]) -> None:
    """``lsrl report SWEEP_DIR`` (or run folders): mean, median, IQM with 95 % bootstrap intervals, curves, profiles."""
    parser = ToolParser(prog="lsrl report", description=report.__doc__)
    parser.add_argument(
        "paths", nargs="+", help="a sweep folder of lsrl sweep, or run folders (runs/NAME/version_N: NAME is the group)"
    )
    parser.add_argument("--out", help="folder for report.md, report.json and figures (default: SWEEP_DIR/report)")
    parser.add_argument(
        "--steps", default="", help="training steps to report besides the final one, e.g. 100000,200000"
    )
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap replications of the tables")
    parser.add_argument("--curve-reps", type=int, default=2_000, help="bootstrap replications of curves and profiles")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--scores", help="YAML of ENV_ID: [random, reference] for normalised scores")
    parser.add_argument(
        "--last", type=int, default=10, help="average each run's last N evaluations (the seed papers' metric)"
    )
    args = parser.parse_args(argv)
    try:
        steps = [int(step) for step in args.steps.split(",") if step.strip()]
    except ValueError:
        parser.error(f"--steps {args.steps}: give comma-separated integers, e.g. 100000,200000")
    if args.reps < 1 or args.curve_reps < 1:
        parser.error(f"--reps {args.reps} and --curve-reps {args.curve_reps} must be >= 1")
    if args.last < 1:
        parser.error(f"--last {args.last}: give the number of evaluations to average, >= 1")
    from lightning_sparse_rl.report.build import build_report
    from lightning_sparse_rl.report.document import ReportSettings
    from lightning_sparse_rl.report.normalization import load_reference_scores
    from lightning_sparse_rl.report.runs import load_results, sweep_provenance, unfinished_trials
    from lightning_sparse_rl.sweep.layout import is_sweep_folder

    agents = load_results(args.paths)
    header = ["Command: `lsrl report " + " ".join(argv) + "`", *sweep_provenance(args.paths)]
    settings = ReportSettings(
        steps=steps,
        reps=args.reps,
        curve_reps=args.curve_reps,
        seed=args.seed,
        references=load_reference_scores(args.scores) if args.scores else {},
        header=header,
        unfinished=unfinished_trials(args.paths),
        last_evaluations=args.last,
    )
    single_sweep = len(args.paths) == 1 and is_sweep_folder(args.paths[0])
    out = Path(args.out or (Path(args.paths[0]) / "report" if single_sweep else "report"))
    content = build_report(agents, out, settings)
    print((out / "report.md").read_text())
    for path in content["files"]:
        print(f"Wrote {path}")


def configs(argv: Sequence[str]) -> None:
    """``lsrl configs``: list the shipped configs and sweep files; ``lsrl configs copy NAME [DEST]`` copies one."""
    parser = ToolParser(prog="lsrl configs", description=configs.__doc__)
    parser.add_argument("action", nargs="?", choices=["list", "copy"], default="list")
    parser.add_argument("name", nargs="?", help="copy: a shipped config or sweep file (sac, ds_td3_vs_td3, ...)")
    parser.add_argument("dest", nargs="?", help="copy: the file or folder to write (default: NAME.yaml here)")
    parser.add_argument("--force", action="store_true", help="copy: overwrite DEST if it exists")
    args = parser.parse_args(argv)
    run_configs, sweep_files = shipped_configs.shipped("config"), shipped_configs.shipped("sweep")
    if args.action == "list":
        if args.name is not None:
            parser.error(f"lsrl configs list takes no name ({args.name!r}); copy one with: lsrl configs copy NAME")
        width = max(map(len, [*run_configs, *sweep_files]))
        print(f"Configs (lsrl fit --config NAME), in {shipped_configs.configs_folder()}:")
        for name, path in run_configs.items():
            print(f"  {name:<{width}}  {shipped_configs.description(path)}")
        print("Sweep files (lsrl sweep NAME):")
        for name, path in sweep_files.items():
            print(f"  {name:<{width}}  {shipped_configs.description(path)}")
        return
    name = (args.name or "").removesuffix(".yaml")
    source = run_configs.get(name) or sweep_files.get(name)
    if source is None:
        parser.error(f"no shipped config or sweep file named {args.name!r}: see lsrl configs")
    dest = Path(args.dest or f"{name}.yaml")
    if dest.is_dir():
        dest = dest / source.name
    if dest.exists() and not args.force:
        parser.error(f"{dest} exists: give another DEST, or --force to overwrite it")
    atomic_write_bytes(dest, source.read_bytes())
    command = f"lsrl sweep {dest}" if name in sweep_files else f"lsrl fit --config {dest}"
    print(f"Wrote {dest} (a copy of {source}); edit it, then: {command}")


#: ``lsrl`` subcommands that are not LightningCLI's.
TOOLS = {"view": view, "export": export, "plot": plot, "report": report, "configs": configs}
