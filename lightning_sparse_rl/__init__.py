"""lightning-sparse-rl: sparse deep RL (SAC, TD3, dynamic sparse training, ANF) on PyTorch Lightning.

``SAC``, ``TD3``, ``OffPolicyAlgorithm``, ``EnvDataModule`` and ``make_trainer`` are imported on first use
(PEP 562), so that the parts that need no Lightning (sweeps, reports) load none.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The package's exports and the modules they live in.
_EXPORTS = {
    "SAC": "lightning_sparse_rl.algorithms",
    "TD3": "lightning_sparse_rl.algorithms",
    "OffPolicyAlgorithm": "lightning_sparse_rl.algorithms",
    "EnvDataModule": "lightning_sparse_rl.data.datamodule",
    "make_trainer": "lightning_sparse_rl.trainer",
}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import an export on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_sparse_rl' has no attribute {name!r}")
