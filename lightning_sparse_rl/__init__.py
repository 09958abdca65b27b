"""lightning-sparse-rl: sparse deep RL (SAC, TD3, dynamic sparse training, ANF) on PyTorch Lightning."""

from lightning_sparse_rl.algorithms import SAC, TD3, OffPolicyAlgorithm
from lightning_sparse_rl.data.datamodule import EnvDataModule
from lightning_sparse_rl.trainer import make_trainer

__all__ = ["SAC", "TD3", "EnvDataModule", "OffPolicyAlgorithm", "make_trainer"]
__version__ = "0.1.0"
