"""``python -m lightning_sparse_rl.cli ARGS`` runs ``lsrl ARGS`` (how a sweep's trials start ``lsrl fit``)."""

from lightning_sparse_rl.cli import main

main()
