"""Denormal floats flushed to zero on every thread that does the maths (x86 FTZ/DAZ).

A float32 below the smallest normal number (|x| < 1.18e-38, float64: 2.2e-308) is *denormal*; x86 CPUs take a
slow path for every arithmetic operation that reads or writes one. Long SAC/TD3 runs make many: Adam with
coupled L2 weight decay pushes a weight that gets no gradient from the data (the inputs of a dead ReLU unit)
toward zero in ever smaller steps, and after ~15 000 updates a fifth of a hidden layer can be denormal, which
made whole runs up to 3× slower on some CPUs.

:func:`flush_denormals` sets the CPU's flush-to-zero and denormals-are-zero modes (``torch.set_flush_denormal``)
on the calling thread **and on every thread of torch's OpenMP pool**: ``torch.set_flush_denormal`` alone covers
only the thread that calls it, and torch's intra-op threads keep the mode they were created with. Threads
created later inherit the mode of the thread that creates them. The package calls it when
:mod:`lightning_sparse_rl.networks` is imported and again when an algorithm is set up for fitting, so ``lsrl
fit``, the tutorial front, sweep trials, ``lsrl view``/``export`` and ``SAC``/``TD3`` used from Python are all
covered. Set ``LSRL_FLUSH_DENORMALS=0`` in the environment to keep the CPU's default arithmetic.

Why this mechanism: it costs nothing per step, and covers every tensor (weights, optimizer moments, targets,
activations, gradients), where zeroing tiny values in the optimizer step would cover only what the step
writes. What changes: any float32 result or input below 1.18e-38 in magnitude (float64: 2.2e-308, which
includes MuJoCo's and NumPy's arithmetic on these threads) reads as exactly 0. Nothing above that changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

#: Environment variable that turns the flushing off when set to ``0``, ``false``, ``no`` or ``off``.
ENV_VAR = "LSRL_FLUSH_DENORMALS"

#: Elements in the probe tensor: far above torch's grain size (32 768), so a multiplication is split
#: across every intra-op thread.
_PROBE_ELEMENTS = 1 << 20


def flushing_requested() -> bool:
    """Whether :data:`ENV_VAR` asks for flushing (the default) rather than the CPU's default arithmetic."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in {"0", "false", "no", "off"}


def flush_denormals(enabled: bool = True) -> bool:
    """Set (or clear, with ``enabled=False``) flush-to-zero on this thread and on torch's OpenMP threads.

    Idempotent and cheap (one empty parallel region). Returns ``False`` where the CPU has no such mode
    (non-x86), as ``torch.set_flush_denormal`` does.
    """
    supported = torch.set_flush_denormal(enabled)
    if supported:
        _run_on_openmp_threads(lambda: torch.set_flush_denormal(enabled))
    return supported


def apply_configured() -> bool:
    """Flush denormals unless :data:`ENV_VAR` turns it off; returns whether they are now flushed here."""
    if not flushing_requested():
        return False
    return flush_denormals(True)


def denormals_flushed() -> bool:
    """Whether denormals read as zero on every intra-op thread: a large denormal tensor times 1.0 is all 0.

    The probe's values are written as bit patterns (the smallest float32 denormal), not computed, so the
    calling thread's own mode cannot zero them before the multiplication runs on the pool.
    """
    probe = torch.ones(_PROBE_ELEMENTS, dtype=torch.int32).view(torch.float32)
    return count_denormals(probe * 1.0) == 0


#: Per dtype: the integer dtype of the same width, the exponent bits and the mantissa bits.
_FLOAT_LAYOUT: dict[torch.dtype, tuple[torch.dtype, int, int]] = {
    torch.float64: (torch.int64, 0x7FF0_0000_0000_0000, 0x000F_FFFF_FFFF_FFFF),
    torch.float32: (torch.int32, 0x7F80_0000, 0x007F_FFFF),
    torch.float16: (torch.int16, 0x7C00, 0x03FF),
    torch.bfloat16: (torch.int16, 0x7F80, 0x007F),
}


def integer_bits(tensor: torch.Tensor) -> torch.Tensor:
    """The bit patterns of a floating-point ``tensor`` as the signed integers of the same width (a view, no copy)."""
    return tensor.view(_FLOAT_LAYOUT[tensor.dtype][0])


def below_sign_bits(dtype: torch.dtype) -> int:
    """The bits below the sign bit of a float ``dtype`` (exponent and mantissa), as an integer mask.

    A float's bits ANDed with it, read as :func:`integer_bits`, are its magnitude's: they order as the magnitudes
    do (NaN after infinity) and are 0 exactly at ±0.
    """
    _, exponent_bits, mantissa_bits = _FLOAT_LAYOUT[dtype]
    return exponent_bits | mantissa_bits


def count_denormals(tensor: torch.Tensor) -> int:
    """The number of denormal entries of a floating-point ``tensor`` (zero exponent, non-zero mantissa).

    Read from the bit patterns, so the count is right whether or not this thread treats denormals as zero.
    """
    int_dtype, exponent_bits, mantissa_bits = _FLOAT_LAYOUT[tensor.dtype]
    bits = tensor.detach().contiguous().view(int_dtype)
    return int(((bits & exponent_bits) == 0).logical_and_((bits & mantissa_bits) != 0).sum())


def count_nonzero_entries(tensor: torch.Tensor) -> int:
    """The number of entries of a floating-point ``tensor`` that are not ±0, denormals included.

    Read from the bit patterns: ``torch.count_nonzero`` counts denormals as zero on a thread that treats them
    as zero, so it would undercount the weights of a policy file written before flushing was on.
    """
    bits = integer_bits(tensor.detach().contiguous())
    return int(((bits & below_sign_bits(tensor.dtype)) != 0).sum())


#: The CPU flags of bf16 instructions that PyTorch's CPU kernels use for bf16 matrix products.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_instructions() -> list[str] | None:
    """The CPU's bf16 instructions among :data:`BF16_CPU_FLAGS` (``[]``: none), or ``None`` where unknown.

    Read from ``/proc/cpuinfo``'s flags, so known on Linux x86 only. Without them a CPU computes bf16 products by
    converting to float32 and back: ``bf16-mixed`` was 4-5× *slower* than ``32-true`` on an AVX2 AMD EPYC.
    """
    cpuinfo = Path("/proc/cpuinfo")
    try:
        lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    if flags is None:
        return None
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def _run_on_openmp_threads(job: Callable[[], object]) -> None:
    """Run ``job()`` once on each of ``torch.get_num_threads()`` threads of the OpenMP runtime torch uses.

    Uses libgomp's ``GOMP_parallel`` (the entry point of ``#pragma omp parallel``), found among the libraries
    this process has loaded. Where torch uses another OpenMP runtime the worker threads are left as they are:
    those created after the main thread's mode was set inherit it.
    """
    threads = torch.get_num_threads()
    libgomp = _loaded_libgomp()
    if threads <= 1 or libgomp is None:
        return
    region = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _data: job())
    libgomp.GOMP_parallel(region, None, ctypes.c_uint(threads), ctypes.c_uint(0))


def _loaded_libgomp() -> ctypes.CDLL | None:
    """The libgomp this process has mapped (torch's own), or ``None`` off Linux or without one."""
    maps = Path("/proc/self/maps")
    if not sys.platform.startswith("linux") or not maps.exists():
        return None
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5] if len(fields) == 6 else ""
        if Path(path).name.startswith("libgomp"):
            library = ctypes.CDLL(path)
            return library if hasattr(library, "GOMP_parallel") else None
    return None
