"""Shards of an embedding job: which files job I of N embeds (`artenc embed --shard I/N`).

A file belongs to shard ``blake2b(relpath as UTF-8, 8 bytes) mod N``: the path relative to
the folder it was found under, never its content, its size or its absolute location, so
every job of an array computes the same split on any machine and in any run (Python's own
``hash()`` is salted per process and is never used), the N shares are disjoint and together
cover every file, and a re-run of one job picks up exactly the files it left. Adding files
moves none of the others to another shard.

The jobs of a SLURM job array find their place with ``shard="auto"``: index
``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``
(https://slurm.schedmd.com/job_array.html, "Job Array Environment Variables").

This is the io layer: it imports nothing from artenc but its error types.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from artenc.errors import ParameterError

_SPEC = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")
SLURM_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN")


def shard_of(relpath: str, count: int) -> int:
    """The shard in [0, count) that owns the file at `relpath` (text, '/'-separated, relative
    to its root as `artenc embed` stores it): the first 8 bytes of its BLAKE2b digest
    (hashlib, RFC 7693) read as a big-endian integer, modulo `count`."""
    digest = hashlib.blake2b(relpath.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Job `index` of `count` (0 <= index < count); `owns(relpath)` says whether a file is its."""

    index: int
    count: int

    def owns(self, relpath: str) -> bool:
        return shard_of(relpath, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: object, environ: Mapping[str, str] | None = None) -> Shard | None:
    """A `Shard` from what a user gives: None (no sharding), a `Shard`, a pair ``(I, N)``,
    the text ``"I/N"``, or ``"auto"`` (the SLURM array task's place, from `environ`, by
    default ``os.environ``; see the module docstring).

    Raises ParameterError("shard", ...) for anything else: N < 1, I outside [0, N), text
    that is not I/N, or "auto" outside a SLURM array job.
    """
    if value is None or isinstance(value, Shard):
        return value
    if isinstance(value, str):
        if value.strip() == "auto":
            return _from_slurm(os.environ if environ is None else environ)
        m = _SPEC.match(value)
        if not m:
            raise ParameterError("shard", f"must be I/N (job I of N, counting from 0) or 'auto', got {value!r}")
        index, count = int(m.group(1)), int(m.group(2))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        index, count = value
    else:
        raise ParameterError("shard", f"must be (I, N), 'I/N' or 'auto', got {value!r}")
    if count < 1:
        raise ParameterError("shard", f"needs N >= 1 jobs, got {index}/{count}")
    if not 0 <= index < count:
        raise ParameterError("shard", f"needs 0 <= I < N (jobs count from 0), got {index}/{count}")
    return Shard(index, count)


def _from_slurm(environ: Mapping[str, str]) -> Shard:
    task, count, first = (environ.get(k) for k in SLURM_ENV)
    if task is None or count is None:
        raise ParameterError("shard", "'auto' needs a SLURM array job (SLURM_ARRAY_TASK_ID and "
                                      "SLURM_ARRAY_TASK_COUNT are not set); give I/N instead")
    try:
        index, n = int(task) - int(first or 0), int(count)
    except ValueError:
        raise ParameterError("shard", f"'auto': SLURM_ARRAY_TASK_ID={task!r}, SLURM_ARRAY_TASK_COUNT={count!r} "
                                      "are not integers") from None
    return parse_shard((index, n))
