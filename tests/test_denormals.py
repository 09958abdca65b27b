"""Denormal floats read as zero on every thread of every process that does the maths (no x86 slow path).

Each check runs in a fresh interpreter, because what is tested is the state of the CPU's threads from the
start of a process: the main thread and the threads of torch's OpenMP pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lightning_sparse_rl.floating_point import ENV_VAR, count_denormals, count_nonzero_entries

#: Float32 denormals written as bit patterns (the smallest one, 1.4e-45), 2^20 of them: a multiplication by
#: 1.0 is split across every intra-op thread. Printed: how many products stay non-zero.
_PROBE = """
import sys, torch
threads, pool_first, module = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
torch.set_num_threads(threads)
if pool_first:  # a user's own torch work has started the OpenMP pool before the package is imported
    torch.ones(1 << 20).mul_(2.0)
__import__(module)
denormals = torch.ones(1 << 20, dtype=torch.int32).view(torch.float32)
print(int(((denormals * 1.0).view(torch.int32) != 0).sum()))
"""


def _python(script: str, *args: object, flush: bool = True) -> str:
    """stdout of ``python -c script args`` in a fresh interpreter, with flushing left on or turned off."""
    env = {**os.environ, ENV_VAR: "1" if flush else "0"}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("threads", "pool_first", "module"),
    [
        (1, False, "lightning_sparse_rl.networks"),
        (2, False, "lightning_sparse_rl.networks"),
        (2, True, "lightning_sparse_rl.networks"),
        (2, True, "lightning_sparse_rl.cli"),  # lsrl fit, sweep trials, view and export
        (2, True, "lightning_sparse_rl.policy"),  # an exported policy loaded from Python
    ],
)
def test_denormals_times_one_are_zero_on_every_thread(threads, pool_first, module):
    """After importing the package, no thread keeps a denormal, whether or not torch's pool existed first."""
    assert int(_python(_PROBE, threads, int(pool_first), module)) == 0


def test_turning_it_off_keeps_the_cpus_arithmetic():
    """``LSRL_FLUSH_DENORMALS=0``: every product of a denormal by 1.0 is that denormal, on both threads."""
    assert int(_python(_PROBE, 2, 1, "lightning_sparse_rl.networks", flush=False)) == 1 << 20


#: A real short fit (SAC on Pendulum, Python API, 2 threads, torch's pool started before the import) in which
#: the actor's first hidden layer dies after 20 updates (biases at -1000, no weight decay): its weights get no
#: gradient from then on, and Adam's first moments decay by 0.9 per update, through the denormal range after
#: about 700-900 updates, as the moments of dead ReLU units do in long runs. Printed: the denormals left in the
#: weights and the optimizer moments at the end.
_DYING_UNITS_FIT = """
import json, sys, torch
torch.set_num_threads(2)
torch.ones(1 << 20).mul_(2.0)
import lightning as L
from lightning_sparse_rl import SAC, EnvDataModule, make_trainer
from lightning_sparse_rl.floating_point import count_denormals
from lightning_sparse_rl.sparse import linear_layers

class KillFirstActorLayer(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.gradient_steps == 20:
            with torch.no_grad():
                linear_layers(pl_module.actor)[0].bias.fill_(-1000.0)

L.seed_everything(0, verbose=False)
data = EnvDataModule("Pendulum-v1", seed=0, start_timesteps=100, max_timesteps=920, eval_freq=920, eval_episodes=1)
model = SAC(data.env_spec, hidden_width=64, weight_decay=0.0)
trainer = make_trainer(save_dir=sys.argv[1], callbacks=[KillFirstActorLayer()], enable_progress_bar=False)
trainer.fit(model, data)
moments = [t for o in trainer.optimizers for s in o.state.values() for t in s.values() if t.is_floating_point()]
print(json.dumps({
    "weights": sum(count_denormals(p) for p in model.parameters()),
    "moments": sum(count_denormals(t) for t in moments),
}))
"""


def test_a_fit_whose_units_die_ends_with_no_denormal(tmp_path):
    """With the package's default no weight or moment is denormal; turned off, the same fit leaves hundreds."""
    flushed = json.loads(_python(_DYING_UNITS_FIT, tmp_path / "flushed").splitlines()[-1])
    kept = json.loads(_python(_DYING_UNITS_FIT, tmp_path / "kept", flush=False).splitlines()[-1])
    assert (flushed["weights"], flushed["moments"]) == (0, 0)
    assert kept["moments"] > 100


def test_count_denormals_reads_bit_patterns():
    """Counts by exponent and mantissa bits, per dtype; zeros, normals, infinities and NaNs are not denormal."""
    float32 = torch.tensor([1, 0x007F_FFFF, 0x0080_0000, 0, 0x7F80_0000, 0x7FC0_0000, -0x7FFF_FFFF - 1 + 5])
    assert count_denormals(float32.to(torch.int32).view(torch.float32)) == 3  # 1, 0x7FFFFF and -0 | 5
    bfloat16 = torch.tensor([1, 0x007F, 0x0080, 0], dtype=torch.int16).view(torch.bfloat16)
    assert count_denormals(bfloat16) == 2
    float64 = torch.tensor([1, 0x0010_0000_0000_0000, 0], dtype=torch.int64).view(torch.float64)
    assert count_denormals(float64) == 1  # the smallest denormal; the smallest normal and 0 are not


def test_nonzero_entries_count_denormals_as_weights():
    """A policy's connections are its non-zero bit patterns, whether or not this thread reads denormals as 0."""
    weights = torch.tensor([1, 0, -0x7FFF_FFFF - 1, 0x3F80_0000], dtype=torch.int32).view(torch.float32)
    assert count_nonzero_entries(weights) == 2  # the smallest denormal and 1.0; +0 and -0 are not
