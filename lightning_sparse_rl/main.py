"""``python -m lightning_sparse_rl.main``: the tutorial's command line (see :mod:`lightning_sparse_rl.cli.tutorial`)."""

from lightning_sparse_rl.cli.tutorial import main

if __name__ == "__main__":
    main()
