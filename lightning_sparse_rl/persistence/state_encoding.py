"""Plain Python/numpy state ↔ what ``torch.load(weights_only=True)`` accepts, for checkpoints.

Checkpoints hold env snapshots and generator states with numpy arrays, numpy scalars and deques; they are
stored as tensors (keeping the numpy dtype) and tagged dicts, so checkpoints still load with PyTorch's
safe loader.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import torch

_NDARRAY, _NPSCALAR, _DEQUE, _TUPLE = "__ndarray__", "__npscalar__", "__deque__", "__tuple__"


def encode(value: Any) -> Any:
    """``value`` with every numpy array/scalar, deque and tuple replaced by a safe-loadable tagged dict."""
    if isinstance(value, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.array(value, copy=True))}
    if isinstance(value, np.generic):
        return {_NPSCALAR: torch.from_numpy(np.array(value))}
    if isinstance(value, collections.deque):
        return {_DEQUE: [encode(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict):
        if _NDARRAY in value:
            return value[_NDARRAY].numpy().copy()
        if _NPSCALAR in value:
            return value[_NPSCALAR].numpy()[()]
        if _DEQUE in value:
            return collections.deque((decode(v) for v in value[_DEQUE]), maxlen=value["maxlen"])
        if _TUPLE in value:
            return tuple(decode(v) for v in value[_TUPLE])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
