"""The command line: ``lsrl fit`` (LightningCLI), ``lsrl view / export / plot``, and the tutorial-flag front.

This package sits at the edge: nothing in the library imports it. ``python -m lightning_sparse_rl.main`` runs
the tutorial front (:mod:`lightning_sparse_rl.cli.tutorial`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from lightning.pytorch.cli import ArgsType
from lightning.pytorch.utilities.rank_zero import rank_zero_module
from typing_extensions import override

import lightning_sparse_rl
from lightning_sparse_rl import shipped_configs
from lightning_sparse_rl.cli.errors import run_reporting_errors
from lightning_sparse_rl.cli.fit import SparseRLCLI, build_cli
from lightning_sparse_rl.cli.sweep import sweep
from lightning_sparse_rl.cli.tools import TOOLS

__all__ = ["SparseRLCLI", "build_cli", "main", "run_lsrl", "with_shipped_configs"]


class _NoServiceTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines (adverts for hosted services)."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the tips."""
        return not record.getMessage().startswith("💡 Tip:")


_NO_SERVICE_TIPS = _NoServiceTips()


def with_shipped_configs(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` of a shipped config (``sac``, ``ds_td3``) replaced by its file's path.

    A path that exists is kept as given, so a file of that name in the working folder wins.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out) and (file := shipped_configs.find(out[i + 1], "config")):
            out[i + 1] = str(file)
        elif arg.startswith("--config=") and (file := shipped_configs.find(arg.split("=", 1)[1], "config")):
            out[i] = f"--config={file}"
    return out


def run_lsrl(argv: list[str]) -> None:
    """Run the ``lsrl`` command ``argv`` (``fit ...``, ``view ...``, ``export ...``, ``plot ...``); errors propagate."""
    # Not for our users: Lightning's adverts on every run, a deprecation inside Lightning's use of torch's
    # pytree, and LightningCLI's note on `args` (the tutorial front passes its translated arguments on purpose).
    rank_zero_module.log.addFilter(_NO_SERVICE_TIPS)  # the logger of Lightning's rank-zero messages (it sets it)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
    if argv[:1] in (["--version"], ["-V"]):
        print(f"lsrl (lightning-sparse-rl) {lightning_sparse_rl.__version__}")
        return
    tools = {**TOOLS, "sweep": sweep}
    if argv and argv[0] in tools:
        tools[argv[0]](argv[1:])
        return
    build_cli(with_shipped_configs(argv))


def main(args: ArgsType = None) -> None:
    """Console-script entry point of ``lsrl`` (user errors as one line, see :func:`run_reporting_errors`)."""
    try:
        run_reporting_errors(run_lsrl, list(sys.argv[1:] if args is None else args))
    except BrokenPipeError:  # the reader of our output stopped reading (lsrl configs | head): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        sys.exit(1)


if __name__ == "__main__":
    main()
