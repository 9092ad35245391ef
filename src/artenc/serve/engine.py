"""Run queries (decode, encode, search) on a small pool of worker threads.

One pool thread does a whole query, so at most `workers` queries use the CPU at once
and the rest wait in FIFO order: under load every request gets its turn instead of
dozens of half-done decodes competing for the cores. PIL decoding, ONNX Runtime and
FAISS all release the GIL, so `workers` threads use `workers` cores. Each worker runs
the encoder and FAISS with few threads (`threads`), which measured better on a busy
2-core CPU than one query using both cores (and batching several uploads into one
encoder call was slower per image on the CPU, so queries are not batched).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from artenc.images import decode_crop
from artenc.index import load_faiss
from artenc.search import limit_threads, range_search

if TYPE_CHECKING:
    from artenc.index import VectorIndex
    from artenc.runtime import Encoder


def _limit_search_threads(threads: int) -> None:
    """A worker's initializer: `threads` BLAS and OpenMP threads for its searches.

    `artenc.search.limit_threads`, kept for the worker's life: OpenMP counts (FAISS) are
    per calling thread, so each worker sets its own; the BLAS limit (exact flat search)
    is process-wide, the same for every worker. FAISS is loaded first so that its OpenMP
    runtime is among the pools limited.
    """
    load_faiss()
    limit_threads(threads)


class QueryEngine:
    """`upload(data, name, k)` and `vector(v, k)` return futures of (similarities (k,), ids (k,));
    `upload_within` / `vector_within` the same for every work within a cosine radius."""

    def __init__(self, encoder: Encoder, index: VectorIndex, *, workers: int | None = None, threads: int = 1,
                 max_pixels: int | None = None) -> None:
        workers = workers or os.cpu_count() or 1
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got {workers} and {threads}")
        self.encoder = encoder
        self.index = index
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="artenc-query",
                                        initializer=_limit_search_threads, initargs=(threads,))

    def pixels(self, data: bytes, name: str) -> np.ndarray:
        """Decode an upload to model-ready uint8 (3, S, S) (`images.decode_crop`); bombs and
        non-images raise ImageLoadError."""
        return decode_crop(data, self.encoder.preprocess, max_pixels=self.max_pixels, name=name).pixels

    def _search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self.index.search(vectors, k)
        return sims[0], ids[0]

    def _upload(self, data: bytes, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(self.encoder.encode(self.pixels(data, name)[None]), k)

    def _encode(self, data: bytes, name: str) -> np.ndarray:
        return self.encoder.encode(self.pixels(data, name)[None])[0]

    def encode(self, data: bytes, name: str) -> Future:
        """A future of the uploaded image's embedding (dim,) float32 unit vector (ImageLoadError
        when it is not usable); `vector` / `vector_within` then search with it."""
        return self._pool.submit(self._encode, data, name)

    def upload(self, data: bytes, name: str, k: int) -> Future:
        """Nearest works to an uploaded image file (ImageLoadError when it is not usable)."""
        return self._pool.submit(self._upload, data, name, k)

    def vector(self, vector: np.ndarray, k: int) -> Future:
        """Nearest works to a vector (a stored work's own vector)."""
        return self._pool.submit(self._search, np.asarray(vector, dtype=np.float32)[None], k)

    def _within(self, vector: np.ndarray, radius: float, limit: int,
                exclude: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        # the index's vectors as a row source (`VectorIndex.source`: the store, read block by
        # block, or the array it was built from): never every vector of a large store in memory
        return range_search(vector, self.index.source, radius, limit=limit, exclude=exclude)

    def _upload_within(self, data: bytes, name: str, radius: float, limit: int) -> tuple[np.ndarray, np.ndarray, int]:
        return self._within(self.encoder.encode(self.pixels(data, name)[None])[0], radius, limit, None)

    def upload_within(self, data: bytes, name: str, radius: float, limit: int) -> Future:
        """Works with cosine >= radius to an uploaded image: a future of (similarities (r,),
        ids (r,), total within the radius), at most `limit`, exact (`search.range_search`)."""
        return self._pool.submit(self._upload_within, data, name, radius, limit)

    def vector_within(self, vector: np.ndarray, radius: float, limit: int, exclude: int | None = None) -> Future:
        """Works with cosine >= radius to a vector, row `exclude` left out (as `upload_within`)."""
        return self._pool.submit(self._within, np.asarray(vector, dtype=np.float32), radius, limit, exclude)

    def close(self) -> None:
        """Finish running queries, drop queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
