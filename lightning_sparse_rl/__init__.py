"""lightning-sparse-rl: sparse deep RL (SAC, TD3, dynamic sparse training, ANF) on PyTorch Lightning."""

from lightning_sparse_rl.algorithms import SAC, TD3, OffPolicyAlgorithm
from lightning_sparse_rl.data.datamodule import EnvDataModule

__all__ = ["SAC", "TD3", "EnvDataModule", "OffPolicyAlgorithm"]
__version__ = "0.1.0"
