"""Shared helpers for the search/dedup/cluster benchmarks: synthetic data, stores, timing."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def clustered_vectors(n: int, dim: int = 1280, n_clusters: int = 1000, within: float = 0.8,
                      seed: int = 0, dup_share: float = 0.0, planted: list | None = None) -> np.ndarray:
    """Unit vectors around random centres: cos(point, centre) ~ `within` (pairs ~ within^2).

    `dup_share` of the rows are replaced by near-copies (cosine ~0.97) of other rows; their
    (source, copy) rows are appended to `planted` when given.
    Generated in blocks so the only big array is the result.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        noise = rng.standard_normal((m, dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        x[start:start + m] = within * centres[rng.integers(0, n_clusters, m)] + np.sqrt(1 - within**2) * noise
    n_dup = int(dup_share * n)
    if n_dup:
        src, dst = rng.choice(n, size=(2, n_dup), replace=False)
        jitter = rng.standard_normal((n_dup, dim)).astype(np.float32)
        jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
        x[dst] = x[src] + 0.25 * jitter
        if planted is not None:
            planted.extend(zip(src.tolist(), dst.tolist(), strict=True))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def vector_store(root: Path, vectors: np.ndarray):
    """A store holding `vectors` for fake paths (for pure-vector benchmarks)."""
    import pandas as pd

    from artenc.store import BASE_COLUMNS, ModelSignature, Store

    n, dim = vectors.shape
    store = Store.create(root, ModelSignature("synthetic", "bench", {}, dim))
    paths = [f"/synthetic/{i:07d}.jpg" for i in range(n)]
    rows = pd.DataFrame({"path": paths, "relpath": paths, "sha256": [f"{i:064x}" for i in range(n)],
                         "size": 1000, "mtime_ns": 0, "width": 100, "height": 100, "error": None,
                         "row": np.arange(n)}, columns=BASE_COLUMNS)
    store.append_segment(rows, vectors)
    return store.reload()


@contextmanager
def timer(label: str, results: dict):
    t0 = time.perf_counter()
    yield
    results[label] = time.perf_counter() - t0


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; return (seconds, peak RSS of the child in MB, stdout)."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb, out.stdout


def artenc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "artenc.cli", *args]


def load_note() -> str:
    la = os.getloadavg()
    return f"cpus={os.cpu_count()} load avg {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}"


def embed_cached(images: list[Path], out: Path, labels: Path | None = None):
    """Embed `images` (files) into the store `out` unless it is already there; returns the Store."""
    from artenc.embedding import embed_folders
    from artenc.store import Store

    if not (out / "meta.json").exists():
        embed_folders([str(p) for p in images], out, labels=labels, progress=False)
    return Store.open(out)
