"""Noise input features and input permutation: the "extremely noisy environment" of ANF (docs/original_code.md §5).

A fraction ``f`` of the networks' inputs are pure noise. With ``d`` real observation features the
networks read ``D = ceil(d / (1 − f))`` inputs, the ``D − d`` noise features after the real ones, then
(transfer setting) the whole ``D``-vector reordered by a permutation.

This module is plain torch (no Lightning, no Gymnasium): :class:`NoiseFeatures` draws the noise,
:class:`InputFeatures` turns a real observation into the networks' input, and
:func:`estimate_marginal_quantiles` summarises real features for the ``marginals`` distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_sparse_rl.seeding import RandomStream
from lightning_sparse_rl.validation import check_in_range, check_positive

NoiseDistribution = Literal["gaussian", "uniform", "marginals"]
NoiseMode = Literal["network", "env"]
NOISE_DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "uniform", "marginals")
NOISE_MODES: tuple[str, ...] = ("network", "env")

#: Quantiles per real feature kept for the ``marginals`` distribution (100 equal-mass bins, as the
#: original's 100-bin histograms).
MARGINAL_QUANTILES = 101


def check_noise_arguments(
    fake_features: float, noise_std: float, noise_distribution: str, noise_mode: str = "network"
) -> None:
    """Raise ``ValueError``, naming the value and the allowed range or choices, for bad noise settings."""
    check_in_range("fake_features", fake_features, 0.0, 1.0)
    check_positive("noise_std", noise_std)
    if noise_distribution not in NOISE_DISTRIBUTIONS:
        raise ValueError(f"noise_distribution={noise_distribution!r} must be one of {NOISE_DISTRIBUTIONS}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode={noise_mode!r} must be one of {NOISE_MODES}")


def total_input_features(real_features: int, fake_features: float) -> int:
    """Network input size ``D = ceil(d / (1 − f))`` for ``d`` real features and noise fraction ``f``.

    ``f`` is taken as the decimal number it is written as (``0.9`` is 9/10), so ``d = 17, f = 0.9``
    gives the intended 170 (17 real + 153 noise). The original computed in binary floating point,
    where ``1 − 0.9 < 0.1``, and got 171 (docs/original_code.md §5.1).

    Raises:
        ValueError: unless ``0 <= f < 1`` and ``d >= 1``.

    """
    check_in_range("fake_features", fake_features, 0.0, 1.0)
    check_positive("real_features", real_features)
    return math.ceil(Fraction(real_features) / (1 - Fraction(repr(float(fake_features)))))


@dataclass(frozen=True)
class NoiseSpec:
    """How the noise features are drawn (i.i.d. for every sample and every draw).

    Attributes:
        count: number of noise features, ``D − d``.
        distribution: ``gaussian`` N(0, σ²); ``uniform`` on ``[−σ√3, σ√3]`` (the same standard
            deviation σ); ``marginals``: noise feature ``i`` follows the distribution of real feature
            ``i mod d`` under a random policy (its ``quantiles``; uniform between adjacent quantiles).
        std: σ of ``gaussian`` and ``uniform``; unused by ``marginals``.
        quantiles: ``marginals`` only: per real feature, its ``MARGINAL_QUANTILES`` quantiles at
            levels ``0, 1/100, …, 1``, from :func:`estimate_marginal_quantiles`.

    """

    count: int
    distribution: NoiseDistribution = "gaussian"
    std: float = 1.0
    quantiles: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        check_positive("noise count", self.count)
        check_noise_arguments(0.0, self.std, self.distribution)
        if (self.distribution == "marginals") != (self.quantiles is not None):
            raise ValueError("quantiles are required by, and only by, noise_distribution='marginals'")
        if self.quantiles is not None:
            table = np.asarray(self.quantiles, dtype=np.float64)
            if table.ndim != 2 or table.shape[1] != MARGINAL_QUANTILES or (np.diff(table, axis=1) < 0).any():
                raise ValueError(
                    f"quantiles must be a (real features, {MARGINAL_QUANTILES}) table, non-decreasing per "
                    f"feature; got shape {table.shape}"
                )


# Plain data inside EnvSpec: checkpoints that hold it load with weights_only=True.
# Files written before the ``data/`` sub-package existed name it at its old path.
torch.serialization.add_safe_globals([NoiseSpec, (NoiseSpec, "lightning_sparse_rl.noise_features.NoiseSpec")])


def noise_spec(
    real_features: int,
    fake_features: float,
    distribution: NoiseDistribution,
    std: float,
    marginal_observations: Callable[[], np.ndarray],
) -> NoiseSpec | None:
    """The noise features for ``real_features`` real ones at noise fraction ``fake_features``; ``None``: none.

    ``marginal_observations`` gives random-policy observations ``(N, d)`` of the env; it is called (a
    rollout) only for ``distribution: marginals``, whose quantiles it estimates.
    """
    count = total_input_features(real_features, fake_features) - real_features
    if count == 0:
        return None
    quantiles = estimate_marginal_quantiles(marginal_observations()) if distribution == "marginals" else None
    return NoiseSpec(count, distribution, std, quantiles)


def estimate_marginal_quantiles(observations: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """Per-feature quantiles at levels ``0, 0.01, …, 1`` of ``observations`` ``(N, d)``; shape ``d × 101``."""
    if observations.ndim != 2 or len(observations) < 2:
        raise ValueError(f"need observations of shape (N >= 2, d), got {observations.shape}")
    levels = np.linspace(0.0, 1.0, MARGINAL_QUANTILES)
    quantiles = np.quantile(observations.astype(np.float64), levels, axis=0).T
    return tuple(tuple(float(q) for q in row) for row in quantiles)


class NoiseFeatures(nn.Module):
    """Draws noise features ``(K, rows, count)`` on the module's device, agent ``k``'s from its own stream.

    The streams (:class:`~lightning_sparse_rl.seeding.RandomStream`, one per agent) are part of the module's
    ``state_dict`` (extra state), so a checkpoint continues the same noise; on another device type they
    continue by the streams' rule.

    Args:
        spec: what to draw.
        seeds: one stream seed per agent (one seed for the noise of a single env).

    """

    def __init__(self, spec: NoiseSpec, seeds: Sequence[int]) -> None:
        super().__init__()
        self.spec = spec
        self.streams = [RandomStream(seed) for seed in seeds]
        quantiles = torch.tensor(spec.quantiles or (), dtype=torch.float32)
        self.register_buffer("quantiles", quantiles, persistent=False)
        real = quantiles.shape[0] if spec.quantiles else 1
        self.register_buffer("source_feature", torch.arange(spec.count) % real, persistent=False)

    @override
    def forward(self, rows: int) -> Tensor:
        """Fresh noise, shape ``(K, rows, count)``, float32."""
        device = self.source_feature.device
        return torch.stack([self._draw(rows, stream.generator(device)) for stream in self.streams])

    def _draw(self, rows: int, generator: torch.Generator) -> Tensor:
        spec, device = self.spec, self.source_feature.device
        shape = (rows, spec.count)
        if spec.distribution == "gaussian":
            return torch.randn(shape, generator=generator, device=device) * spec.std
        if spec.distribution == "uniform":
            u = torch.rand(shape, generator=generator, device=device)
            return (2.0 * u - 1.0) * (spec.std * math.sqrt(3.0))
        # marginals: pick one of the 100 equal-mass bins of the source feature, then uniform within it.
        position = torch.rand(shape, generator=generator, device=device) * (MARGINAL_QUANTILES - 1)
        index = position.floor().long().clamp_(max=MARGINAL_QUANTILES - 2)
        feature = self.source_feature.expand(rows, -1)
        low, high = self.quantiles[feature, index], self.quantiles[feature, index + 1]
        return torch.lerp(low, high, position - index)

    @override
    def get_extra_state(self) -> dict[str, Any]:
        """Each agent's stream: its seed, device and state."""
        return {"streams": [stream.state_dict() for stream in self.streams]}

    @override
    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the streams (applied on the next draw, on the module's device)."""
        for stream, saved in zip(self.streams, state["streams"], strict=True):
            stream.load_state_dict(saved)


class InputFeatures(nn.Module):
    """The networks' input: real observations ``(K, B, observation_dim)`` → ``(K, B, input_dim)``.

    In ``network`` noise mode it appends ``noise.count`` fresh noise features (a new draw at every
    call, so every network and every forward pass sees different noise; each agent its own). Then it
    reorders all columns by the agent's current permutation: column ``j`` of agent ``k``'s output is
    feature ``permutation[k, j]`` of ``[observation, noise]``. With no noise and identity permutations it
    returns its input.

    Args:
        observation_dim: size of the stored observations (``d``, or ``D`` when the env adds noise).
        real_features: how many leading observation features are real (task) features.
        noise: noise appended here (``network`` mode), or ``None``.
        seeds: one noise-stream seed per agent (``K = len(seeds)``).

    """

    def __init__(self, observation_dim: int, real_features: int, noise: NoiseSpec | None, seeds: Sequence[int]) -> None:
        super().__init__()
        if not 1 <= real_features <= observation_dim:
            raise ValueError(f"real_features={real_features} must be in [1, observation_dim={observation_dim}]")
        self.observation_dim = observation_dim
        self.real_features = real_features
        self.agents = len(seeds)
        self.noise = NoiseFeatures(noise, seeds) if noise is not None else None
        self.input_dim = observation_dim + (noise.count if noise is not None else 0)
        self.register_buffer("permutation", torch.arange(self.input_dim).repeat(self.agents, 1))
        self.permuted = False  # derived from the buffer: saves a check per forward pass
        self.register_load_state_dict_post_hook(_refresh_permuted)

    @override
    def forward(self, obs: Tensor) -> Tensor:
        """``[obs, noise]`` reordered by each agent's permutation, ``(K, B, input_dim)``."""
        if self.noise is not None:
            obs = torch.cat([obs, self.noise(obs.shape[1])], dim=-1)
        if not self.permuted:
            return obs
        return obs.gather(-1, self.permutation.unsqueeze(1).expand(-1, obs.shape[1], -1))

    @torch.no_grad()
    def set_permutation(self, agent: int, permutation: Tensor) -> None:
        """Agent ``agent`` (``0 … K−1``) uses ``permutation`` (a permutation of ``range(input_dim)``) from now on."""
        permutation = torch.as_tensor(permutation, dtype=torch.long).to(self.permutation.device)
        if permutation.shape != (self.input_dim,) or not torch.equal(
            permutation.sort().values, torch.arange(self.input_dim, device=permutation.device)
        ):
            raise ValueError(f"not a permutation of range({self.input_dim}): {permutation.tolist()}")
        self.permutation[agent] = permutation
        _refresh_permuted(self)

    def real_columns(self) -> Tensor:
        """Boolean ``(K, input_dim)``: which input columns of each agent currently carry a real feature."""
        return self.permutation < self.real_features


def _refresh_permuted(features: InputFeatures, incompatible_keys: object = None) -> None:
    """Recompute ``features.permuted`` from its permutation buffer (also after ``load_state_dict``)."""
    identity = torch.arange(features.input_dim, device=features.permutation.device)
    features.permuted = not bool((features.permutation == identity).all())
