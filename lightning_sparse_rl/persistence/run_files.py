"""Result files in a run directory, written atomically (a reader or a crash never sees half a file)."""

from __future__ import annotations

import csv
import errno
import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The columns of ``evaluations.csv`` that every reader needs (one row per evaluation and agent).
EVALUATION_COLUMNS = ("step", "seed", "return")
#: ``OSError`` numbers of a full disk or quota.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, ``fsync`` it, rename it over ``path``, sync the folder.

    Raises:
        OSError: as the OS reports it, naming ``path`` (not the temporary file); for a full disk with a message
            naming ``path`` and the bytes, and saying that the previous ``path`` is intact.

    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        if err.errno in _NO_SPACE:
            raise OSError(
                err.errno,
                f"no space left on the device to write {path} ({len(data):,} bytes); "
                f"{'the previous file is intact' if path.exists() else 'nothing was written'}",
            ) from err
        if err.filename in (temporary, str(temporary)):  # name the file the caller writes, not the temporary one
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        if temporary.exists():  # (unlinking a missing file fails on a read-only file system)
            temporary.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a CSV file with ``header`` and ``rows``, atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(Path(path), text.getvalue().encode())


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy``, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(Path(path), buffer.getvalue())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named ``arrays`` as ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_csv_columns(path: str | Path, required: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV file with a header, by name (empty cells are NaN).

    Raises:
        ValueError: the file is empty, lacks a ``required`` column, or has an incomplete row: fewer values than the
            header, or a last line without its line end (cut by a crash or damage; the run files are written
            whole, so a cut row is never a value to report).

    """
    with open(path, newline="") as handle:
        text = handle.read()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)} (its columns: {', '.join(header)})")
    for line, row in enumerate(body, start=2):
        cut = line == len(rows) and not text.endswith("\n")
        if row and (len(row) < len(header) or cut):
            raise ValueError(
                f"{path}, line {line}: the row {','.join(row)[:80]!r} is incomplete ({len(row)} of {len(header)} "
                f"values{', no line end' if cut else ''}): the file was cut or damaged"
            )
    return {
        name: np.asarray([float(row[i]) if i < len(row) and row[i] != "" else np.nan for row in body if row])
        for i, name in enumerate(header)
    }
