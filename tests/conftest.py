"""pytest set-up for every test: one thread, headless MuJoCo rendering, quiet Lightning warnings."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering (the viewer's video tests)
# the processes tests start (lsrl fit, sweeps) use one thread as the tests do: on a 2-core machine with two pytest-xdist
# workers, an OpenMP pool of every core per process only waits on its threads (tests that need threads set them)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first: the learning tests (``slow``, minutes each) and the xdist groups (chains of real fits).

    pytest-xdist (``--dist loadgroup``) sends the groups first (the largest first), then the single tests in
    collection order: with the learning tests at the front too, no multi-minute test starts near the end, when the
    other worker may have run out of work. The order is otherwise the collection's.
    """
    items.sort(key=lambda item: not (item.get_closest_marker("slow") or item.get_closest_marker("xdist_group")))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\).*")
