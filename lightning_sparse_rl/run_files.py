"""Result files in a run directory, written atomically (a reader or a crash never sees half a file)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a CSV file with ``header`` and ``rows``, atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _replace(Path(path), text.getvalue().encode())


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy``, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    _replace(Path(path), buffer.getvalue())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named ``arrays`` as ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _replace(Path(path), buffer.getvalue())


def read_csv_columns(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV file with a header, by name (empty cells are NaN)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    return {
        name: np.asarray([float(row[i]) if i < len(row) and row[i] != "" else np.nan for row in body])
        for i, name in enumerate(header)
    }
