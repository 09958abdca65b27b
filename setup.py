"""Packaging beyond setup.cfg: the repository's configs/ ships inside the package as lightning_sparse_rl/configs.

configs/ stays the one source (the design fixes it at the top level); the wheel maps it into the package, so an
installed lightning-sparse-rl finds ``lsrl fit --config sac`` without a clone (lightning_sparse_rl/shipped_configs.py).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lightning_sparse_rl", "lightning_sparse_rl.*"]), "lightning_sparse_rl.configs"],
    package_dir={"lightning_sparse_rl.configs": "configs"},
    package_data={"lightning_sparse_rl": ["py.typed"], "lightning_sparse_rl.configs": ["*.yaml", "sweeps/*.yaml"]},
)
