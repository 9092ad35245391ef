"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Every writer goes through `atomic_path`: the content is written to a temporary file in
the destination's folder (same file system, so the rename is atomic), flushed to disk
with ``fsync``, then moved over the destination with ``os.replace`` (POSIX ``rename``).
If the writer raises, the temporary file is removed and the destination is untouched.

Temporary names are ``<name>.<pid>-<8 hex>.tmp<suffix>`` (``seg-000001.npy`` ->
``seg-000001.npy.4711-0a1b2c3d.tmp.npy``): unique per writer, and ending in the
destination's suffix so that writers that choose a format by suffix (matplotlib's
``savefig``, ``np.savez``) still pick the right one. `remove_temp_files` removes the
leftovers of a writer killed before its rename.

This is the io layer: it imports nothing from artenc but its error types.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artenc.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

_TEMP = re.compile(r"\.\d+-[0-9a-f]{8}\.tmp(\.[^.]*)?$")


def temp_path_for(path: str | os.PathLike) -> Path:
    """A fresh temporary path beside `path` (same folder, same suffix); nothing is created."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for a name made by `temp_path_for` (an unfinished atomic write)."""
    return _TEMP.search(Path(path).name) is not None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for a writer, then publish it as `path` atomically.

    For writers that take a file name (``faiss.write_index``, ``fig.savefig``,
    ``torch.onnx.export``, ``np.savez``)::

        with atomic_path(out) as tmp:
            faiss.write_index(index, str(tmp))

    On leaving the block the temporary file is fsync'ed and renamed over `path`
    (``os.replace``). If the block raises, the temporary file is deleted, `path` keeps
    its old content (or stays absent) and the exception propagates. The folder of `path`
    must exist. Raises FileNotFoundError when the block wrote nothing.
    """
    final = Path(path)
    tmp = temp_path_for(final)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path` as a Path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (encoded with `encoding`); returns `path`."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, document: Any, indent: int | None = 2) -> Path:
    """Write `document` as JSON (``json.dumps(document, indent=indent)``, no trailing newline)
    to `path` atomically; raises TypeError for values JSON cannot hold."""
    return atomic_write_text(path, json.dumps(document, indent=indent))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save `array` as ``.npy`` (``np.save(..., allow_pickle=False)``) atomically.

    Raises ParameterError("array", ...) for arrays holding Python objects (dtype object,
    or a structured dtype with object fields): stored arrays never need pickle to load.
    """
    array = np.asanyarray(array)
    if array.dtype.hasobject:
        raise ParameterError("array", f"holds Python objects (dtype {array.dtype}); .npy files are "
                                      "written without pickle, so only numeric, bool or string dtypes fit")
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        np.save(f, array, allow_pickle=False)
    return Path(path)


def atomic_save_parquet(path: str | os.PathLike, frame: pd.DataFrame, *, index: bool = False) -> Path:
    """Save `frame` as Parquet (pyarrow, ``frame.to_parquet(..., index=index)``) atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=index)
    return Path(path)


def remove_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temporary files of unfinished atomic writes directly in `folder`.

    Only safe when no other process is writing into `folder` at the same time (their
    temporary files would be removed under them). Returns the number removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.iterdir():
        if p.is_file() and is_temp_file(p):
            p.unlink(missing_ok=True)
            removed += 1
    return removed
