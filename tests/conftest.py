"""pytest set-up for every test: one thread, headless MuJoCo rendering, quiet Lightning warnings."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering (the viewer's video tests)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
