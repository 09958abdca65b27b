"""The global random number generators' states (Python, numpy, torch CPU and CUDA), to save and restore."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def global_rng_state() -> dict[str, Any]:
    """States of ``random``, ``numpy.random``, torch's CPU generator and every CUDA device's generator."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch.cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`global_rng_state` (CUDA states only where CUDA is available)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "torch.cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch.cuda"])
