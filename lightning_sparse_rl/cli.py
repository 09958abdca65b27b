"""``lsrl``: the LightningCLI entry point (``lsrl fit --config configs/sac.yaml``).

This module sits at the edge: nothing in the package imports it except the tutorial-flag front
(:mod:`lightning_sparse_rl.main`), which translates the original flags into ``lsrl fit`` arguments.
"""

from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from lightning_sparse_rl.algorithms import OffPolicyAlgorithm
from lightning_sparse_rl.callbacks import RLProgressReporter
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
    * the :class:`RLProgressReporter` callback is always present, configurable as ``progress.*``.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the links and the always-on progress callback."""
        parser.link_arguments("data.env_spec", "model.init_args.env_spec", apply_on="instantiate")
        parser.link_arguments("seed_everything", "data.seed")
        parser.add_lightning_class_args(RLProgressReporter, "progress")


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


def main(args: ArgsType = None) -> None:
    """Console-script entry point of ``lsrl``."""
    # Lightning advertises its hosted services on every run; not useful to our users.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    build_cli(args)


if __name__ == "__main__":
    main()
