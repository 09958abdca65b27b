"""Off-policy algorithms as LightningModules."""

from lightning_sparse_rl.algorithms.base import OffPolicyAlgorithm
from lightning_sparse_rl.algorithms.sac import SAC
from lightning_sparse_rl.algorithms.td3 import TD3

__all__ = ["SAC", "TD3", "OffPolicyAlgorithm"]
