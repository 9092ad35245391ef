"""Encode query images and search the index in micro-batches, on one worker thread.

Concurrent requests put jobs on a queue; the worker takes every job waiting (up to
`max_batch`), runs ONE encoder call and ONE index search for all of them, and resolves
each job's future. So the CPU runs a single ONNX session at a time (no thread
oversubscription), and under load the per-image cost falls as batches grow.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    pixels: np.ndarray | None  # uint8 (3, H, W): an upload to encode
    vector: np.ndarray | None  # (dim,) float32: a stored work's vector
    k: int
    future: Future = field(default_factory=Future)


class QueryEngine:
    """Thread-safe `search(pixels=... | vector=..., k)` over an encoder and a vector index."""

    def __init__(self, encoder, index, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.encoder = encoder
        self.index = index
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="artenc-query-engine", daemon=True)
        self._thread.start()

    def submit(self, *, pixels: np.ndarray | None = None, vector: np.ndarray | None = None,
               k: int = 10) -> Future:
        """Queue one query; the future resolves to (similarities (k,), ids (k,)), ids -1 past the end."""
        if (pixels is None) == (vector is None):
            raise ValueError("give exactly one of pixels or vector")
        if not self._thread.is_alive():
            raise RuntimeError("the query engine has been closed")
        job = _Job(pixels, vector, k)
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=10)

    def _next_batch(self) -> list[_Job] | None:
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: finish this batch, then stop
                self._jobs.put(None)
                break
            batch.append(job)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                results = self._compute(batch)
            except Exception as exc:  # noqa: BLE001 - each caller gets the error, the worker lives on
                log.exception("query batch of %d failed", len(batch))
                for job in batch:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)

    def _compute(self, batch: list[_Job]) -> list[tuple[np.ndarray, np.ndarray]]:
        uploads = [j for j in batch if j.pixels is not None]
        encoded = iter(self.encoder.encode(np.stack([j.pixels for j in uploads])) if uploads else ())
        queries = np.stack([next(encoded) if j.pixels is not None else j.vector for j in batch])
        sims, ids = self.index.search(queries, max(j.k for j in batch))
        return [(sims[i, : j.k], ids[i, : j.k]) for i, j in enumerate(batch)]
