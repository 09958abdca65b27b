"""Random streams derived from one run seed, and the one rule by which their generators are saved and restored.

The run seed is ``seed_everything`` (linked to ``data.seed``); in a population every agent has its own seed
(``--seeds``) and derives its own streams from it. Every consumer has its own stream, seeded with
``seed + offset``, so no two consumers share random numbers:

========================  =======  ==========================================================
stream                    offset   consumer
========================  =======  ==========================================================
``train_env``             0        the train env and its action space (warm-up actions)
``dst``                   1        dynamic sparse training's random regrowth
``masks``                 2        the initial sparse masks
``network_noise``         3        ANF's noise features drawn inside the networks
``buffer``                4        replay-buffer sampling
``init``                  5        the networks' initial weights
``policy``                6        the policy's sampling (SAC's Gaussian, TD3's exploration and smoothing noise)
``eval_env``              10 000   the evaluation env (its own episodes)
``marginals``             20 000   the random-policy rollout that estimates ``marginals`` noise
``env_noise``             30 000   the train env's noise features (``noise_mode: env``)
``eval_env_noise``        40 000   the evaluation env's noise features (``noise_mode: env``)
``permutation``           50 000   the transfer setting's input permutations
========================  =======  ==========================================================

Nothing in training draws from the global generators (Python, numpy, torch), which ``seed_everything`` seeds
and :mod:`lightning_sparse_rl.persistence.rng_state` saves for whatever else may use them; the envs' numpy
generators are part of the env snapshot (:mod:`lightning_sparse_rl.data.env_state`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

#: Offset of each consumer's seed from the run seed (see the module docs).
STREAM_OFFSETS: dict[str, int] = {
    "train_env": 0,
    "dst": 1,
    "masks": 2,
    "network_noise": 3,
    "buffer": 4,
    "init": 5,
    "policy": 6,
    "eval_env": 10_000,
    "marginals": 20_000,
    "env_noise": 30_000,
    "eval_env_noise": 40_000,
    "permutation": 50_000,
}


def stream_seed(run_seed: int, stream: str) -> int:
    """The seed of ``stream`` (a key of :data:`STREAM_OFFSETS`) in a run seeded with ``run_seed``."""
    return (run_seed + STREAM_OFFSETS[stream]) % 2**63


class RandomStream:
    """A seeded ``torch.Generator`` that lives on whichever device draws from it, saved and restored by one rule.

    The rule: a saved state continues exactly on the same device type; on another device type (a run
    resumed on a GPU after a CPU start, or the reverse) the stream continues from a seed that is the
    SHA-256 of the saved state: deterministic, but not the numbers the other device would have drawn
    (torch's CPU and CUDA generators have different state formats).

    Args:
        seed: the stream's seed (usually :func:`stream_seed` of the run seed).

    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self._saved: dict[str, Any] | None = None  # a loaded state, applied on the next draw

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator on ``device``: created (seeded), restored from a loaded state, or moved there by the rule."""
        device = torch.device(device)
        current = self._generator
        if current is not None and current.device.type == device.type:
            return current
        saved = self._saved if current is None else {"device": str(current.device), "state": current.get_state()}
        generator = torch.Generator(device=device)
        if saved is None:
            generator.manual_seed(self.seed)
        elif torch.device(saved["device"]).type == device.type:
            generator.set_state(saved["state"])
        else:
            digest = hashlib.sha256(saved["state"].cpu().numpy().tobytes()).digest()
            generator.manual_seed(int.from_bytes(digest[:8], "little") % 2**63)
        self._generator, self._saved = generator, None
        return generator

    def state_dict(self) -> dict[str, Any]:
        """Seed, device and generator state (``None`` before the first draw: the seed alone defines the stream)."""
        if self._generator is not None:
            return {"seed": self.seed, "device": str(self._generator.device), "state": self._generator.get_state()}
        saved = self._saved or {"device": "cpu", "state": None}
        return {"seed": self.seed, "device": saved["device"], "state": saved["state"]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RandomStream:
        """A stream restored from :meth:`state_dict` (its seed included)."""
        stream = cls(state["seed"])
        stream.load_state_dict(state)
        return stream

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; applied on the next :meth:`generator` call, on that call's device."""
        self.seed = int(state["seed"])
        self._generator = None
        self._saved = None if state["state"] is None else {"device": state["device"], "state": state["state"]}


def agent_streams(seeds: tuple[int, ...] | list[int], stream: str) -> list[RandomStream]:
    """One :class:`RandomStream` of ``stream`` per agent seed."""
    return [RandomStream(stream_seed(seed, stream)) for seed in seeds]


def agent_stream_seeds(agent_seeds: tuple[int, ...] | list[int], stream: str, seed: int | None = None) -> list[int]:
    """Each agent's seed of ``stream``: derived from the agent's seed, or ``seed + k`` for agent ``k`` when given."""
    if seed is None:
        return [stream_seed(agent_seed, stream) for agent_seed in agent_seeds]
    return [seed + k for k in range(len(agent_seeds))]


def agent_suffix(agent_seeds: tuple[int, ...] | list[int], seed: int) -> str:
    """The metric-name suffix of the agent with ``seed``: ``/seed_S`` in a population, nothing for one agent."""
    return f"/seed_{seed}" if len(agent_seeds) > 1 else ""
