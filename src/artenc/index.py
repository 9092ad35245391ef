"""FAISS indexes over a store's vectors: build, save in the store, load, detect staleness.

Every kind answers the same question, "the k most cosine-similar vectors", and every
returned similarity is the exact cosine (approximate kinds only choose the candidates;
their scores are recomputed from the vectors, so LSH Hamming distances never leak out).

Kinds (the `kind` argument):

- ``flat``: exact inner-product search (`artenc.search.top_k`: BLAS in blocks), memory n*dim*4 bytes.
- ``hnsw``: HNSW graph, M=16, efConstruction=64, efSearch=32 (recall@10 0.988 on
  100k clustered 1280-d vectors, ~40x sklearn's brute force; efSearch 64: 0.998, ~25x), memory ~n*(dim*4 + 128) bytes.
- ``ivfpq``: IVF (nlist ~ 4 sqrt(n)) + product quantiser (dim/8 bytes per vector),
  nprobe=32, candidates re-ranked exactly; compact, lower recall.
- ``lsh``: random-rotation sign hashes (2*dim bits), re-ranked exactly; for comparison.
- ``auto``: ``flat`` up to AUTO_EXACT_MAX vectors (exact and fast enough), ``hnsw`` above.

Saved in the store's index folder (`Store.index_dir`, ``STORE/index/``) as ``faiss.index``
(FAISS's own binary format, no pickle) and ``index.json`` (kind, parameters, the store
revision and count it was built from). An index whose revision differs from the store's is stale: `load_index` refuses it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.atomic import atomic_path, atomic_write_json
from artenc.errors import UsageError
from artenc.search import (
    as_unit_matrix,
    cap_cosine,
    check_k,
    iter_blocks,
    top_k,
    top_k_of_candidates,
)

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivfpq", "lsh")
AUTO_EXACT_MAX = 50_000
SEARCH_BLOCK = 4096
HNSW_EF_SEARCH = 32  # bench_search, 100k x 1280 clustered: ef 16/24/32/64 -> recall@10 0.948/0.974/0.988/0.998


class StaleIndexError(UsageError):
    """The saved index was built from other vectors than the store holds now."""


def load_faiss():
    """Import FAISS on first use, without its loader's INFO lines on stderr."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def choose_kind(kind: str, n: int) -> str:
    """Resolve `auto` (exact up to AUTO_EXACT_MAX vectors, HNSW above); validate the name."""
    if kind not in KINDS:
        raise UsageError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if n <= AUTO_EXACT_MAX else "hnsw"


@dataclass
class VectorIndex:
    """A FAISS index plus the vectors it covers (for exact re-scoring) and how it was built."""

    index: object
    kind: str
    vectors: np.ndarray
    params: dict = field(default_factory=dict)
    revision: str | None = None

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of each query by cosine similarity.

        Args:
            queries: (m, dim) float unit vectors (cast to float32).
            k: neighbours per query, >= 1.

        Returns:
            (similarities (m, k) float32, ids (m, k) int64 rows), most similar first;
            -inf / -1 where the index holds fewer than k vectors.

        Raises:
            ParameterError: bad `queries` (shape, dtype, dim, NaN) or `k` < 1.

        ``flat`` is exact (`artenc.search.top_k`, ties by smaller id); the other kinds
        ask FAISS for candidates, ``hnsw`` keeps FAISS's inner products, ``ivfpq`` and
        ``lsh`` re-score them exactly (`artenc.search.top_k_of_candidates`).
        """
        queries = as_unit_matrix(queries, "queries", self.vectors.shape[1])
        k = check_k(k)
        if self.kind == "flat":
            return top_k(queries, self.vectors, k, check_matrix=False)  # checked when built
        m, k_eff = len(queries), min(k, self.ntotal)
        sims = np.full((m, k), -np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or k_eff == 0:
            return sims, ids
        exact_scores = self.kind == "hnsw"  # inner products on the stored floats
        fetch = k_eff if exact_scores else min(self.ntotal, max(4 * k_eff, k_eff + 16))
        for block in iter_blocks(m, SEARCH_BLOCK):
            scores, cand = self.index.search(queries[block], fetch)
            if exact_scores:
                sims[block, :k_eff], ids[block, :k_eff] = np.where(cand >= 0, cap_cosine(scores), -np.inf), cand
                continue
            for sub in iter_blocks(len(cand), 256):  # bounded (256, fetch, dim) gather
                s, i = top_k_of_candidates(queries[block][sub], cand[sub], self.vectors, k_eff)
                rows = slice(block.start + sub.start, block.start + sub.stop)
                sims[rows, :k_eff], ids[rows, :k_eff] = s, i
        return sims, ids


def _ivfpq(faiss, x: np.ndarray, seed: int) -> tuple[object, dict]:
    n, d = x.shape
    nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))
    m = next(m for m in (d // 8, d // 16, d // 4, d // 2, d) if m >= 1 and d % m == 0)
    nbits = 8 if n >= 256 * 39 else max(1, min(8, int(np.log2(max(n // 39, 2)))))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train = x[rng.choice(n, size=min(n, 256 * max(nlist, 2 ** nbits)), replace=False)]
    index.train(train)
    index.add(x)
    index.nprobe = min(nlist, 32)
    index.own_fields = True
    quantizer.this.disown()
    return index, {"nlist": nlist, "m": m, "nbits": nbits, "nprobe": index.nprobe}


def build_index(vectors: np.ndarray, kind: str = "auto", *, seed: int = 0) -> VectorIndex:
    """Build an index of `kind` over unit vectors (n, dim)."""
    faiss = load_faiss()
    x = as_unit_matrix(vectors)
    n, d = x.shape
    if n == 0:
        raise UsageError("cannot index an empty store (embed some images first)")
    kind = choose_kind(kind, n)
    t0 = time.monotonic()
    params: dict = {}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(x)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.hnsw.efSearch = HNSW_EF_SEARCH
        index.add(x)
        params = {"M": 16, "efConstruction": 64, "efSearch": HNSW_EF_SEARCH}
    elif kind == "ivfpq":
        index, params = _ivfpq(faiss, x, seed)
    else:  # lsh
        nbits = 2 * d
        index = faiss.IndexLSH(d, nbits, True, True)
        index.train(x[np.random.default_rng(seed).choice(n, size=min(n, 20_000), replace=False)])
        index.add(x)
        params = {"nbits": nbits}
    log.info("built %s index over %d vectors in %.1f s", kind, n, time.monotonic() - t0)
    return VectorIndex(index, kind, x, params)


def index_paths(store: Store) -> tuple[Path, Path]:
    """The saved index of `store`: (`store.index_dir`/faiss.index, `store.index_dir`/index.json)."""
    return store.index_dir / "faiss.index", store.index_dir / "index.json"


def save_index(store: Store, vindex: VectorIndex) -> Path:
    """Write the index and its metadata into the store (atomic renames; metadata last)."""
    faiss = load_faiss()
    data_path, meta_path = index_paths(store)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(data_path) as tmp:
        faiss.write_index(vindex.index, str(tmp))
    meta = {"kind": vindex.kind, "params": vindex.params, "count": vindex.ntotal,
            "dim": int(vindex.vectors.shape[1]), "revision": store.revision}
    atomic_write_json(meta_path, meta)
    vindex.revision = store.revision
    return data_path


def load_index(store: Store) -> VectorIndex | None:
    """The saved index, None when there is none; StaleIndexError when the store has changed."""
    data_path, meta_path = index_paths(store)
    if not meta_path.is_file() or not data_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("revision") != store.revision or meta.get("count") != len(store):
        raise StaleIndexError(
            f"{store.root}: the saved {meta.get('kind')} index was built from {meta.get('count')} vectors "
            f"(revision {meta.get('revision')}) but the store now holds {len(store)} (revision "
            f"{store.revision}); rebuild it with `artenc index {store.root}`"
        )
    index = load_faiss().read_index(str(data_path))
    if meta["kind"] == "hnsw":
        index.hnsw.efSearch = int(meta["params"].get("efSearch", HNSW_EF_SEARCH))
    elif meta["kind"] == "ivfpq":
        index.nprobe = int(meta["params"].get("nprobe", 32))
    return VectorIndex(index, meta["kind"], store.vectors, meta.get("params", {}), meta["revision"])


def index_for_store(store: Store, kind: str | None = None) -> VectorIndex:
    """The saved index if fresh (and of `kind` when given), else one built in memory.

    A stale saved index is refused (StaleIndexError), never silently used.
    """
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    saved = load_index(store)
    if saved is not None and kind in (None, "auto", saved.kind):
        return saved
    return build_index(store.vectors, kind or "auto")
