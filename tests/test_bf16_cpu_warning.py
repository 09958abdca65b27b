"""A bf16 run on a CPU without bf16 instructions warns once, at the start of the fit (real short fits)."""

from __future__ import annotations

import warnings

import pytest
from helpers import short_fit

from lightning_sparse_rl.algorithms import base

SHORT = {"start_timesteps": 50, "max_timesteps": 60, "eval_freq": 60}


def _warnings_of_fit(tmp_path, monkeypatch, instructions, precision) -> list[str]:
    """The warnings of a 10-step SAC fit at ``precision`` on a CPU reporting these bf16 ``instructions``."""
    monkeypatch.setattr(base, "cpu_bf16_instructions", lambda: instructions)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short_fit(tmp_path, data=SHORT, trainer={"precision": precision})
    return [str(w.message) for w in caught if "bf16 instructions" in str(w.message)]


def test_bf16_mixed_without_bf16_instructions_warns_with_the_fix(tmp_path, monkeypatch):
    (message,) = _warnings_of_fit(tmp_path, monkeypatch, [], "bf16-mixed")
    assert message.startswith("precision bf16-mixed on a CPU without bf16 instructions")
    assert "use --trainer.precision 32-true here" in message


@pytest.mark.parametrize(
    ("instructions", "precision"),
    [(["avx512_bf16"], "bf16-mixed"), (None, "bf16-mixed"), ([], "32-true")],
    ids=["the CPU has them", "unknown CPU", "fp32"],
)
def test_no_warning_where_bf16_is_native_unknown_or_unused(tmp_path, monkeypatch, instructions, precision):
    assert _warnings_of_fit(tmp_path, monkeypatch, instructions, precision) == []
