"""The tutorial's command line: ``python -m lightning_sparse_rl.main --policy SAC --env HalfCheetah-v3 ...``.

It accepts the original ``main.py`` flags (docs/original_code.md §1), translates them into ``lsrl fit`` arguments,
prints that equivalent command and runs it: one code path, the same objects as LightningCLI.
Flags of features that are not implemented yet are accepted and, when set to anything but their
default, rejected with a clear "not yet" message.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from lightning_sparse_rl.cli import run_lsrl
from lightning_sparse_rl.cli.errors import ToolParser, run_reporting_errors
from lightning_sparse_rl.data.noise_features import NOISE_DISTRIBUTIONS, NOISE_MODES
from lightning_sparse_rl.sparse import DISTRIBUTION_METHODS, check_sparsity_arguments
from lightning_sparse_rl.validation import check_at_least, check_in_range, check_positive

POLICIES = ("ANF-SAC", "ANF-TD3", "SAC", "TD3", "Static-SAC", "Static-TD3", "Prune-SAC", "Prune-TD3")

#: Flags of later features: (flag, default, reason it is not available yet).
NOT_YET: tuple[tuple[str, object, str], ...] = (
    ("sac_type", "Gaussian", "the deterministic SAC variant is not implemented yet"),
    ("act_func_args", None, "parametric activations (srelu, allrelu, ...) are not implemented yet"),
    ("act_func_per_neuron", False, "parametric activations (srelu, allrelu, ...) are not implemented yet"),
)


def _bool_pair(parser: argparse.ArgumentParser, name: str, default: bool, help_text: str) -> None:
    """``--name`` / ``--not_name`` as in the original."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=name, action="store_true", help=help_text)
    group.add_argument(f"--not_{name}", dest=name, action="store_false")
    parser.set_defaults(**{name: default})


def build_parser() -> argparse.ArgumentParser:
    """The original ``main.py`` arguments, with the original defaults (all numbers typed)."""
    p = ToolParser(
        prog="python -m lightning_sparse_rl.main",
        description="Tutorial-compatible front of `lsrl fit` (flags of the original ANF main.py).",
    )
    p.add_argument("--policy", default="ANF-SAC", choices=POLICIES)
    p.add_argument("--env", default="HalfCheetah-v3", help="Gymnasium id; -v2/-v3 MuJoCo ids run as -v5")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--seeds",
        default=None,
        help="train a population in one process, one agent per seed: 1-8 or 1,3,5 (lsrl fit --seeds)",
    )
    p.add_argument("--start_timesteps", type=float, default=25e3, help="random warm-up steps before training")
    p.add_argument("--eval_freq", type=float, default=5e3)
    p.add_argument("--eval_episodes", type=int, default=5)
    p.add_argument("--max_timesteps", type=float, default=1e6, help="training steps (warm-up excluded)")
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--buffer_size", type=float, default=1e6)
    p.add_argument("--optimizer", default="adam", choices=("adam", "maskadam", "sgd"))
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--discount", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--temperature", type=float, default=0.2, help="SAC: fixed entropy temperature α")
    p.add_argument("--automatic_entropy_tuning", action="store_true", help="SAC: learn α")
    p.add_argument("--updates_per_step", type=int, default=1)
    p.add_argument("--target_update_interval", type=int, default=1, help="SAC")
    p.add_argument("--policy_noise", type=float, default=0.2, help="TD3")
    p.add_argument("--noise_clip", type=float, default=0.5, help="TD3")
    p.add_argument("--policy_freq", type=int, default=2, help="TD3")
    p.add_argument("--expl_noise", type=float, default=0.1, help="TD3")
    p.add_argument("--num_hid_layers", type=int, default=2)
    p.add_argument("--num_hid_neurons", type=int, default=256)
    p.add_argument("--activation", default="relu")
    p.add_argument("--wandb_mode", default="online", choices=("online", "offline", "disabled"))
    p.add_argument("--wandb_project", default="lightning-sparse-rl")
    p.add_argument("--wandb_entity", default=None)
    p.add_argument("--wandb_run_name", default=None, help="default: POLICY_ENV_seedSEED")
    p.add_argument("--wandb_tags", nargs="*", default=None, help="tags of the wandb run")
    p.add_argument("--save_model_period", type=float, default=250_000, help="accepted; checkpoints: best + last")
    p.add_argument("--outname", default="default_output_script.txt", help="accepted and ignored (HPC bookkeeping)")
    p.add_argument("--env_init_friction", type=float, default=1.5, help="accepted and ignored (unused originally)")
    _bool_pair(p, "print_comments", True, "print episode and evaluation lines")
    _bool_pair(p, "save_results", True, "write the CSV log of metrics")
    _bool_pair(p, "save_model", True, "write checkpoints (best and last)")
    p.add_argument(
        "--global_sparsity", type=float, default=0.0, help="Static-*/ANF-*/Prune-*: (final) sparsity per network"
    )
    p.add_argument("--input_layer_sparsity", type=float, default=-1.0, help="-1 free, 0 dense, (0,1) pinned")
    p.add_argument("--sparsity_distribution_method", default="uniform", choices=DISTRIBUTION_METHODS)
    p.add_argument("--output_layer_sparse", action="store_true", help="the actor's output layer may be sparse")
    p.add_argument("--init_new_weights_method", default="zero", choices=("zero", "unif", "xavier"))
    p.add_argument("--ann_setZeta", type=float, default=0.05, help="ANF-*: fraction pruned/regrown per update")
    p.add_argument("--ann_ascTopologyChangePeriod", type=float, default=1e3, help="ANF-*: gradient updates")
    p.add_argument("--ann_earlyStopTopologyChange", type=float, default=1e9, help="ANF-*: last topology update")
    p.add_argument(
        "--prune_start_step", type=float, default=-1, help="Prune-*: first pruning update (-1: 20 %% of the updates)"
    )
    p.add_argument(
        "--prune_end_step", type=float, default=-1, help="Prune-*: last pruning update (-1: 80 %% of the updates)"
    )
    p.add_argument("--prune_period", type=float, default=1e3, help="Prune-*: gradient updates between pruning steps")
    p.add_argument("--fake_features", type=float, default=0.0, help="fraction of noise input features, [0, 1)")
    p.add_argument("--fake_noise_std", type=float, default=1.0, help="std of the noise features, > 0")
    p.add_argument(
        "--load_noise_distribution",
        default="",
        help="any value: noise follows the real features' distributions (estimated here, no file needed)",
    )
    p.add_argument("--noise_distribution", default=None, choices=NOISE_DISTRIBUTIONS, help="(not in the original)")
    p.add_argument("--noise_mode", default="network", choices=NOISE_MODES, help="(not in the original)")
    p.add_argument("--adjust_env_period", type=float, default=-1.0, help="permute all inputs every N steps; -1 never")
    p.add_argument("--empty_buffer_on_env_change", action="store_true")
    p.add_argument("--refill_timesteps", type=float, default=25e3)
    p.add_argument("--refill_mode", default="random", choices=("random", "current"))
    p.add_argument(
        "--load_model", default="", help="resume from this checkpoint of an earlier run with the same flags (.ckpt)"
    )
    # Later features: accepted so that tutorial commands parse, rejected unless left at their default.
    p.add_argument("--sac_type", default="Gaussian", choices=("Gaussian", "Deterministic"))
    p.add_argument("--act_func_args", type=float, nargs="+", default=None)
    p.add_argument("--act_func_per_neuron", action="store_true")
    return p


def check_not_yet(args: argparse.Namespace) -> None:
    """Reject flags of unimplemented features that are set to anything but their default."""
    for name, default, reason in NOT_YET:
        if getattr(args, name) != default:
            raise ValueError(f"--{name} {getattr(args, name)}: {reason}. Leave it at its default ({default!r}).")


def check_sparsity_flags(args: argparse.Namespace) -> None:
    """Stop early, naming the flag, when a sparsity flag is out of range."""
    try:
        check_sparsity_arguments(args.global_sparsity, args.sparsity_distribution_method, args.input_layer_sparsity)
        check_in_range("--ann_setZeta", args.ann_setZeta, 0.0, 1.0, low_inclusive=False)
        check_positive("--ann_ascTopologyChangePeriod", args.ann_ascTopologyChangePeriod)
        check_positive("--ann_earlyStopTopologyChange", args.ann_earlyStopTopologyChange)
        check_positive("--prune_period", args.prune_period)
        if args.policy.startswith("Prune"):
            start, end = pruning_window(args)
            if not 0 <= start < end:
                raise ValueError(f"--prune_start_step={start} and --prune_end_step={end} need 0 <= start < end")
    except ValueError as error:
        raise ValueError(f"Bad sparsity flag: {error}") from None


def noise_distribution(args: argparse.Namespace) -> str:
    """``--noise_distribution``, else ``marginals`` when ``--load_noise_distribution`` is set, else ``gaussian``."""
    if args.noise_distribution is not None:
        return args.noise_distribution
    return "marginals" if args.load_noise_distribution else "gaussian"


def check_noise_flags(args: argparse.Namespace) -> None:
    """Stop early, naming the flag, when a noise-feature or permutation flag is out of range."""
    try:
        check_in_range("--fake_features", args.fake_features, 0.0, 1.0)
        check_positive("--fake_noise_std", args.fake_noise_std)
        check_at_least("--refill_timesteps", args.refill_timesteps, 1)
        if 0 < args.adjust_env_period < 1:
            raise ValueError(f"--adjust_env_period={args.adjust_env_period} must be >= 1 step, or <= 0 for never")
    except ValueError as error:
        raise ValueError(f"Bad noise-feature flag: {error}") from None


def noise_notices(args: argparse.Namespace) -> list[str]:
    """Say how noise and permutation flags are read where they differ from the original."""
    notices = []
    if args.load_noise_distribution and args.noise_distribution is None:
        notices.append(
            f"--load_noise_distribution {args.load_noise_distribution}: noise features follow the real "
            f"features' distributions, estimated from a random-policy rollout of {args.env} (no file needed)."
        )
    if args.empty_buffer_on_env_change and args.adjust_env_period <= 0:
        notices.append("--empty_buffer_on_env_change has no effect without --adjust_env_period > 0.")
    return notices


def to_lsrl_args(args: argparse.Namespace) -> list[str]:
    """Translate parsed original flags into ``lsrl fit`` arguments (LightningCLI syntax)."""
    algorithm = "TD3" if "TD3" in args.policy else "SAC"
    run_name = f"{args.policy}_{args.env}_seed{args.seed}"
    model: dict[str, object] = {
        "lr": args.lr,
        "discount": args.discount,
        "tau": args.tau,
        "hidden_layers": args.num_hid_layers,
        "hidden_width": args.num_hid_neurons,
        "activation": args.activation,
        # The original treats maskadam as Adam for dense and Static policies (Prune-* is not in the original).
        "optimizer": args.optimizer
        if args.policy.startswith(("ANF", "Prune")) or args.optimizer != "maskadam"
        else "adam",
    }
    if algorithm == "SAC":
        model |= {
            "temperature": args.temperature,
            "automatic_entropy_tuning": args.automatic_entropy_tuning,
            "target_update_interval": args.target_update_interval,
        }
    else:
        model |= {
            "policy_noise": args.policy_noise,
            "noise_clip": args.noise_clip,
            "policy_freq": args.policy_freq,
            "expl_noise": args.expl_noise,
        }
    data: dict[str, object] = {
        "env_id": args.env,
        "buffer_size": int(args.buffer_size),
        "batch_size": args.batch_size,
        "start_timesteps": int(args.start_timesteps),
        "max_timesteps": int(args.max_timesteps),
        "eval_freq": int(args.eval_freq),
        "eval_episodes": args.eval_episodes,
        "updates_per_step": args.updates_per_step,
        "fake_features": args.fake_features,
        "noise_std": args.fake_noise_std,
        "noise_distribution": noise_distribution(args),
        "noise_mode": args.noise_mode,
    }
    loggers: list[dict[str, object]] = []
    if args.save_results:
        loggers.append(
            {
                "class_path": "lightning_sparse_rl.loggers.CSVLogger",
                "init_args": {"save_dir": "runs", "name": args.policy.lower()},
            }
        )
    if args.wandb_mode != "disabled":
        wandb = {
            "mode": args.wandb_mode,
            "project": args.wandb_project,
            "entity": args.wandb_entity,
            "name": args.wandb_run_name or run_name,
            "tags": args.wandb_tags,
        }
        loggers.append({"class_path": "lightning_sparse_rl.loggers.WandbLogger", "init_args": wandb})
    callbacks = sparsity_callbacks(args) + noise_callbacks(args)
    if args.save_model:
        checkpoint = {"monitor": "eval/return", "mode": "max", "filename": "best", "save_last": True}
        callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint})
    callbacks.append({"class_path": "lightning_sparse_rl.callbacks.RLProgressBar", "init_args": {"refresh_rate": 50}})

    out = ["fit", f"--seed_everything={args.seed}", f"--model=lightning_sparse_rl.{algorithm}"]
    if args.seeds is not None:
        out.append(f"--seeds={args.seeds}")
    out += [f"--model.{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in model.items()]
    out += [f"--data.{k}={v}" for k, v in data.items()]
    out.append(f"--trainer.logger={json.dumps(loggers) if loggers else 'false'}")
    out.append(f"--trainer.callbacks={json.dumps(callbacks)}")
    if not args.save_model:
        out.append("--trainer.enable_checkpointing=false")
    if not args.save_results:
        out.append("--results.save_results=false")
    if not args.print_comments:
        out += ["--progress.print_episodes=false", "--progress.print_evaluations=false"]
    if args.load_model:
        if args.load_model == "default" or not args.load_model.endswith(".ckpt"):
            raise ValueError(
                f"--load_model {args.load_model}: give the checkpoint (.ckpt) of an earlier run with the same "
                "flags, e.g. runs/anf-sac/version_0/checkpoints/last.ckpt"
            )
        out.append(f"--ckpt_path={args.load_model}")
    return out


def pruning_window(args: argparse.Namespace) -> tuple[int, int]:
    """``Prune-*``: first and last pruning update; by default 20 % and 80 % of the updates (Graesser et al.)."""
    updates = args.max_timesteps * args.updates_per_step
    start = args.prune_start_step if args.prune_start_step >= 0 else 0.2 * updates
    end = args.prune_end_step if args.prune_end_step >= 0 else 0.8 * updates
    return int(start), int(end)


def sparsity_callbacks(args: argparse.Namespace) -> list[dict[str, object]]:
    """``Static-*``: masks; ``ANF-*``: masks and dynamic sparse training; ``Prune-*``: GMP; dense policies: none."""
    if args.policy in ("SAC", "TD3"):
        return []
    distribution: dict[str, object] = {
        "global_sparsity": args.global_sparsity,
        "distribution": args.sparsity_distribution_method,
        "input_layer_sparsity": args.input_layer_sparsity,
        "output_layer_sparse": args.output_layer_sparse,
    }
    if args.policy.startswith("Prune"):
        start, end = pruning_window(args)
        schedule = {"start_step": start, "end_step": end, "update_period": int(args.prune_period)}
        return [
            {"class_path": "lightning_sparse_rl.callbacks.GradualPruningCallback", "init_args": distribution | schedule}
        ]
    callbacks: list[dict[str, object]] = [
        {"class_path": "lightning_sparse_rl.callbacks.SparsityDistributionCallback", "init_args": distribution}
    ]
    if args.policy.startswith("ANF"):
        dynamic = {
            "drop_fraction": args.ann_setZeta,
            "update_period": int(args.ann_ascTopologyChangePeriod),
            "stop_step": int(args.ann_earlyStopTopologyChange),
            "new_weight_init": args.init_new_weights_method,
        }
        callbacks.append({"class_path": "lightning_sparse_rl.callbacks.DynamicSparsityCallback", "init_args": dynamic})
    return callbacks


def noise_callbacks(args: argparse.Namespace) -> list[dict[str, object]]:
    """The connectivity metric (always, as the original) and, with ``--adjust_env_period``, permutations."""
    callbacks: list[dict[str, object]] = [
        {
            "class_path": "lightning_sparse_rl.callbacks.InputConnectivityCallback",
            "init_args": {"save_results": args.save_results},
        }
    ]
    if args.adjust_env_period > 0:
        permutation = {
            "period": int(args.adjust_env_period),
            "empty_buffer": args.empty_buffer_on_env_change,
            "refill_timesteps": int(args.refill_timesteps),
            "refill_mode": args.refill_mode,
        }
        callbacks.append(
            {"class_path": "lightning_sparse_rl.callbacks.FeaturePermutationCallback", "init_args": permutation}
        )
    return callbacks


def policy_notice(args: argparse.Namespace) -> str | None:
    """Say when sparsity flags have no effect: a dense policy, or a sparse one with all levels 0.

    See docs/original_code.md §2.1.
    """
    sparsity_set = args.global_sparsity > 0 or 0 < args.input_layer_sparsity < 1
    if args.policy in ("SAC", "TD3"):
        if sparsity_set:
            return f"--policy {args.policy} is dense: the sparsity flags are ignored, as in the original."
        return None
    if sparsity_set:
        return None
    base = "TD3" if "TD3" in args.policy else "SAC"
    return (
        f"--policy {args.policy} with global_sparsity 0 and input_layer_sparsity -1 has no sparse layer: "
        f"this run is dense {base}, exactly as in the original (docs/original_code.md §2.1)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the original flags, print the equivalent ``lsrl`` command and run it (errors as one line, status 2)."""
    run_reporting_errors(run_tutorial_command, list(sys.argv[1:] if argv is None else argv))


def run_tutorial_command(argv: Sequence[str]) -> None:
    """Parse the original flags, print the equivalent ``lsrl`` command and run it."""
    args = build_parser().parse_args(argv)
    check_not_yet(args)
    check_sparsity_flags(args)
    check_noise_flags(args)
    for notice in [policy_notice(args), *noise_notices(args)]:
        if notice:
            print(notice)
    lsrl_args = to_lsrl_args(args)
    print("Equivalent command: lsrl " + " ".join(shlex.quote(a) for a in lsrl_args), flush=True)
    run_lsrl(lsrl_args)


if __name__ == "__main__":
    main()
