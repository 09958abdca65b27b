"""Lightning callbacks of lightning-sparse-rl."""

from lightning_sparse_rl.callbacks.progress import RLProgressReporter

__all__ = ["RLProgressReporter"]
