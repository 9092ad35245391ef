"""FAISS indexes over a store's vectors: build, save in the store, load, extend, detect staleness.

Every kind answers the same question, "the k most cosine-similar vectors", and every
returned similarity is the exact cosine (approximate kinds only choose the candidates;
their scores are recomputed from the vectors, so LSH Hamming distances and PQ estimates
never leak out).

Kinds (the `kind` argument):

- ``flat``: exact inner-product search (`artenc.search.top_k`: BLAS in blocks), memory n*dim*4 bytes.
- ``hnsw``: HNSW graph, M=16, efConstruction=64, efSearch=32 (recall@10 0.988 on
  100k clustered 1280-d vectors, ~40x sklearn's brute force; efSearch 64: 0.998, ~25x), memory ~n*(dim*4 + 128) bytes.
- ``ivfpq``: the index for millions of works. IVF (nlist ~ sqrt(n) coarse cells) + product
  quantiser (`ivf_params`: 8-bit codes, about dim/8 bytes per vector, `pq_m`;
  exact flat codes below IVF_PQ_MIN_ROWS vectors), built within a memory
  budget: trained on a sample (`vectors_at`), vectors added block by block (`vector_blocks`),
  never the whole matrix in memory. A query scans nprobe cells with PQ estimates, then the
  top `rerank` candidates are re-scored exactly from the (memory-mapped) stored vectors
  (`Store.vectors_at`); the re-ranking is what makes recall@10 >= 0.95 reachable. Memory:
  n*(dim/8 + 8) bytes of codes and ids (1M x 1280: 168 MB). Saved indexes are loaded with
  ``faiss.IO_FLAG_MMAP`` (inverted lists mapped from the file, not read) and never need the
  vectors to load. Incremental: new segments of the store join the index (`update_index`).
- ``lsh``: random-rotation sign hashes (2*dim bits), re-ranked exactly; for comparison.
- ``auto``: ``flat`` up to AUTO_EXACT_MAX vectors (exact and fast enough), ``hnsw`` up to
  AUTO_HNSW_MAX, ``ivfpq`` above (HNSW over 1M x 1280 took 537 s and 10.4 GB here).

Why not `autofaiss`: autofaiss 2.18 pins ``numpy<2`` (artenc runs on NumPy 2) and reads its
input through embedding-reader from files, not from a store's blocks; so the IVF-PQ index is
made by FAISS's own ``index_factory`` with FAISS's documented rules (the "Guidelines to
choose an index" wiki page: nlist between sqrt(n) and 16 sqrt(n), 30-256 training points per
cell, PQ with 8-bit codes, nprobe to trade speed for recall).

Ids of an ``ivfpq`` index built from a store are physical rows (the position of a vector in
the concatenated segments, `store_rows`), which appending a segment never changes; they are
mapped to item rows at search time. So when new segments are appended (new works), only
their live rows are added (`update_index`: the trained cells and codebooks stay); rows
superseded (a re-embedded file) or removed since are masked at search time (mapped to no
item). A store whose covered segments are gone (`Store.compact`) needs a rebuild
(StaleIndexError); so does a saved index of another kind whose revision differs.

Saved in the store's index folder (`Store.index_dir`, ``STORE/index/``) as ``faiss.index``
(FAISS's own binary format, no pickle) and ``index.json`` (kind, parameters, the store
revision and count it was built from; for ``ivfpq`` also the segments and physical rows it
covers).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.atomic import atomic_path, atomic_write_json
from artenc.defaults import AUTO_EXACT_MAX, AUTO_HNSW_MAX, INDEX_KINDS
from artenc.errors import UsageError
from artenc.search import (
    ArrayRows,
    as_unit_matrix,
    cap_cosine,
    check_k,
    iter_blocks,
    top_k,
    top_k_of_candidates,
)
from artenc.store import INDEX_META_FILE

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger(__name__)

KINDS = INDEX_KINDS
SEARCH_BLOCK = 4096
HNSW_EF_SEARCH = 32  # bench_search, 100k x 1280 clustered: ef 16/24/32/64 -> recall@10 0.948/0.974/0.988/0.998
IVF_BLOCK = 16_384  # rows added (or range-searched) per block: ~4 x 84 MB of FAISS buffers at dim 1280
IVF_TRAIN_PER_LIST = 40  # FAISS warns below 39 training points per cell
IVF_PQ_MIN_ROWS = 256 * IVF_TRAIN_PER_LIST  # 8-bit PQ codebooks need this many training points;
# below it an ``ivfpq`` index stores exact (flat) codes
IVF_NITER = 10  # k-means iterations of the cells and of the PQ codebooks (FAISS default 25)
IVF_NPROBE = 16
IVF_RERANK = 2048  # candidates re-scored exactly per query (see `pq_m`: recall@10 0.995 at 5,000 works per cluster)
RERANK_GATHER_BYTES = 32 * 2**20  # one (queries, candidates, dim) float32 gather of the re-ranking


class StaleIndexError(UsageError):
    """The saved index was built from other vectors than the store holds now."""


def load_faiss():
    """Import FAISS on first use, without its loader's INFO lines on stderr."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def choose_kind(kind: str, n: int) -> str:
    """Resolve `auto` (exact up to AUTO_EXACT_MAX vectors, HNSW up to AUTO_HNSW_MAX, IVF-PQ
    above); validate the name."""
    if kind not in KINDS:
        raise UsageError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if n <= AUTO_EXACT_MAX else "hnsw" if n <= AUTO_HNSW_MAX else "ivfpq"


def ivf_params(n: int, dim: int) -> dict:
    """FAISS's documented IVF-PQ rules for n vectors of `dim`: nlist ~ sqrt(n) cells (at
    least IVF_TRAIN_PER_LIST vectors each), `pq_m(dim)` sub-quantisers, always 8-bit codes
    (fewer bits made the PQ ranking too coarse to find every pair, newcomer report B4), a
    training sample of IVF_TRAIN_PER_LIST points per cell and per code, nprobe and the exact
    re-ranking depth. Below IVF_PQ_MIN_ROWS vectors (too few to train 256 codes per
    sub-quantiser) ``codes`` is "flat": the cells hold the exact vectors (``IVF{nlist},Flat``),
    n*dim*4 bytes, at most ~52 MB at dim 1280; `refresh_index` rebuilds with PQ codes once the
    store has grown past it.

    Returns:
        {"nlist", "m", "nbits", "train", "nprobe", "rerank"} (ints) and "codes" ("pq" or "flat").
    """
    nlist = int(max(1, min(round(np.sqrt(n)), n // IVF_TRAIN_PER_LIST)))
    codes = "pq" if n >= IVF_PQ_MIN_ROWS else "flat"
    nbits = 8
    train = int(min(n, IVF_TRAIN_PER_LIST * max(nlist, 2 ** nbits if codes == "pq" else 1)))
    return {"nlist": nlist, "m": pq_m(dim), "nbits": nbits, "train": train, "nprobe": min(nlist, IVF_NPROBE),
            "rerank": IVF_RERANK, "codes": codes}


def pq_m(dim: int) -> int:
    """The number of PQ sub-quantisers for `dim`-d vectors: the divisor of `dim` nearest (by
    ratio) to dim/8, i.e. 8 dimensions per 8-bit code and about dim/8 bytes per vector (FAISS
    needs m to divide dim); on a tie the larger (more bytes, better recall). Why dim/8 and not
    FAISS's common dim/16: on the bench_scale clusters at 5 M works (5,000 works per cluster,
    cosine 0.64 between cluster-mates, neighbours 2-10 within 0.01 of each other) the PQ
    estimates must order a cluster finely enough for the exact re-ranking to see the true top 10:
    300k vectors with the same cluster size, nprobe 16, recall@10 with 1,024 / 2,048 re-ranked:
    dim/16 0.795 / -, dim/10 0.916 / 0.976, dim/8 0.968 / 0.996, dim/4 1.0 (2x the bytes).
    A dim with few divisors gets the nearest one rather than a tiny m: 32,492 = 4 x 8123 gets
    8123 (4 dims per code, dim/4 bytes, still 16x smaller than float32), not 4 (8123 dims per
    code, useless). The simpler-looking alternatives were rejected: an OPQ or PCA to a multiple
    of 8 ("OPQ{m}_{d'},IVF..,PQ{m}") trains a dim x d' matrix (4.2 GB at 32,492-d), and padding
    would change every vector the index is given.
    """
    target = dim / 8
    divisors = [m for m in range(1, dim + 1) if dim % m == 0]
    return min(divisors, key=lambda m: (abs(np.log(m / max(target, 1.0))), -m))


def store_rows(store: Store) -> np.ndarray:
    """(n,) int64 physical row (position in the concatenated segment vectors, stable when
    segments are appended) of every item row of `store`, in items order (`Store.physical_rows`)."""
    return store.physical_rows()


class VectorIndex:
    """A FAISS index plus where its vectors come from (for exact re-scoring) and how it was built.

    Attributes:
        index: the FAISS index; kind: one of KINDS (resolved); params: its parameters.
        revision: the store revision it matches (None until saved or loaded).
        source: the rows it covers: a `Store` or an `artenc.search.ArrayRows`
            (`vector_blocks`, `vectors_at`, `len`).
        row_of_id: ``ivfpq`` over a store: (P,) int64 item row of each FAISS id (a physical
            row), -1 for rows superseded or removed since they were added; None: ids are rows.
        segments: ``ivfpq`` over a store: the store segments whose rows it holds.
    """

    def __init__(self, index, kind: str, vectors=None, params: dict | None = None, revision: str | None = None,
                 *, source=None, row_of_id: np.ndarray | None = None, segments: list[int] | None = None) -> None:
        self.index = index
        self.kind = kind
        self.params = params or {}
        self.revision = revision
        self.source = source if source is not None else ArrayRows(vectors)
        self._vectors = vectors
        self.row_of_id = row_of_id
        self.segments = segments
        self.read_only = False  # inverted lists memory-mapped from the saved file (`load_index`)

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32 vectors of the covered rows (the store's, read on first use)."""
        if self._vectors is None:
            self._vectors = self.source.vectors
        return self._vectors

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Rows the index answers with (item rows; masked ids not counted)."""
        return len(self.source)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) vectors of item rows (sorted rows read fastest)."""
        return np.asarray(self.source.vectors_at(rows), dtype=np.float32)

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Item rows of FAISS ids (-1 stays -1; masked ids become -1)."""
        if self.row_of_id is None:
            return ids
        safe = np.clip(ids, 0, len(self.row_of_id) - 1)
        return np.where((ids >= 0) & (ids < len(self.row_of_id)), self.row_of_id[safe], -1)

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
        ``lsh`` re-score them exactly (`artenc.search.top_k_of_candidates`): ``ivfpq``
        its `params["rerank"]` best PQ candidates, read with `vectors_at`.
        """
        queries = as_unit_matrix(queries, "queries", self.dim)
        k = check_k(k)
        if self.kind == "flat":
            return top_k(queries, self.vectors, k, check_matrix=False)  # checked when built
        m, k_eff = len(queries), min(k, self.ntotal)
        sims = np.full((m, k), -np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or k_eff == 0:
            return sims, ids
        exact_scores = self.kind == "hnsw"  # inner products on the stored floats
        if self.kind == "ivfpq":
            fetch = int(min(self.index.ntotal, max(int(self.params.get("rerank", IVF_RERANK)), k_eff)))
        else:
            fetch = k_eff if exact_scores else min(self.ntotal, max(4 * k_eff, k_eff + 16))
        sub_rows = max(1, RERANK_GATHER_BYTES // (4 * fetch * self.dim))
        for block in iter_blocks(m, SEARCH_BLOCK):
            scores, cand = self.index.search(queries[block], fetch)
            if exact_scores:
                sims[block, :k_eff], ids[block, :k_eff] = np.where(cand >= 0, cap_cosine(scores), -np.inf), cand
                continue
            cand = self._rows_of(cand)
            for sub in iter_blocks(len(cand), sub_rows):  # bounded (sub_rows, fetch, dim) gather
                c = cand[sub]
                uniq = np.unique(c[c >= 0])
                if not len(uniq):
                    continue
                pos = np.where(c >= 0, np.searchsorted(uniq, c), -1)  # order kept: ties by smaller row
                s, i = top_k_of_candidates(queries[block][sub], pos, self.vectors_at(uniq), k_eff)
                rows = slice(block.start + sub.start, block.start + sub.stop)
                sims[rows, :k_eff], ids[rows, :k_eff] = s, np.where(i >= 0, uniq[np.maximum(i, 0)], -1)
        return sims, ids


def _ivf_index(faiss, dim: int, params: dict):
    flat = params.get("codes") == "flat"
    codes = "Flat" if flat else f"PQ{params['m']}x{params['nbits']}np"
    index = faiss.index_factory(dim, f"IVF{params['nlist']},{codes}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = IVF_NITER
    if not flat:
        index.pq.cp.niter = IVF_NITER
    ivf.nprobe = params["nprobe"]
    return index


def _add_blocks(index, source, ids: np.ndarray | None, rows: np.ndarray | None = None) -> None:
    """Add the vectors of `rows` of `source` (default all) block by block, with FAISS ids
    `ids` (aligned with `rows`; None: the rows themselves)."""
    count = len(source) if rows is None else len(rows)
    for offset, block in source.vector_blocks(rows, block_rows=IVF_BLOCK):
        stop = offset + len(block)
        block_ids = (np.arange(offset, stop, dtype=np.int64) if rows is None else rows[offset:stop]) \
            if ids is None else ids[offset:stop]
        index.add_with_ids(np.ascontiguousarray(block, dtype=np.float32), block_ids.astype(np.int64))
        log.debug("ivfpq: %d / %d vectors added", stop, count)


def build_ivfpq(source, *, ids: np.ndarray | None = None, seed: int = 0, params: dict | None = None):
    """An IVF-PQ FAISS index over `source` built within a memory budget.

    Args:
        source: a `Store` or `artenc.search.ArrayRows` (n rows of unit vectors, n >= 1).
        ids: (n,) int64 FAISS id of each row (a store's physical rows, `store_rows`), or
            None for the row numbers.
        seed: the training sample.
        params: `ivf_params` output to use (default: computed for n and dim).

    Returns:
        (the FAISS index, params dict).

    Memory: the training sample (params["train"] x dim float32: 40k x 1280 = 205 MB at 1M),
    one block of IVF_BLOCK vectors at a time, and the codes (n x (m + 8) bytes).
    Source: FAISS ``index_factory`` ("IVF{nlist},PQ{m}x{nbits}" or, below IVF_PQ_MIN_ROWS
    vectors, "IVF{nlist},Flat"; inner product) and the
    FAISS wiki's guidelines for nlist, training size and PQ codes.
    """
    faiss = load_faiss()
    n = len(source)
    dim = int(source.dim)
    params = dict(params or ivf_params(n, dim))
    index = _ivf_index(faiss, dim, params)
    train_rows = np.sort(np.random.default_rng(seed).choice(n, size=params["train"], replace=False))
    index.train(as_unit_matrix(source.vectors_at(train_rows)))
    _add_blocks(index, source, ids)
    return index, params


def build_index(vectors: np.ndarray, kind: str = "auto", *, seed: int = 0) -> VectorIndex:
    """Build an index of `kind` over unit vectors (n, dim) held in memory.

    Raises:
        UsageError: no vectors or an unknown kind; ParameterError: bad `vectors`.
    """
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
        index, params = build_ivfpq(ArrayRows(x), seed=seed)
    else:  # lsh
        nbits = 2 * d
        index = faiss.IndexLSH(d, nbits, True, True)
        index.train(x[np.random.default_rng(seed).choice(n, size=min(n, 20_000), replace=False)])
        index.add(x)
        params = {"nbits": nbits}
    log.info("built %s index over %d vectors in %.1f s", kind, n, time.monotonic() - t0)
    return VectorIndex(index, kind, x, params)


def build_store_index(store: Store, kind: str = "auto", *, seed: int = 0) -> VectorIndex:
    """Build an index of `kind` over a store: ``ivfpq`` (auto above AUTO_HNSW_MAX works) from
    the store's blocks, with physical rows as ids (extendable, `update_index`); the other
    kinds over `Store.vectors` (`build_index`).

    Raises:
        UsageError: empty store or an unknown kind.
    """
    n = len(store)
    if n == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    kind = choose_kind(kind, n)
    if kind != "ivfpq":
        return build_index(store.vectors, kind, seed=seed)
    t0 = time.monotonic()
    phys = store_rows(store)
    index, params = build_ivfpq(store, ids=phys, seed=seed)
    log.info("built ivfpq index over %d vectors in %.1f s", n, time.monotonic() - t0)
    return VectorIndex(index, "ivfpq", params=params, source=store, row_of_id=_row_of_id(phys),
                       segments=store.segment_ids())


def _row_of_id(phys: np.ndarray, size: int = 0) -> np.ndarray:
    """(P,) int64 item row of each physical row (-1: not live), P >= `size`."""
    size = max(int(size), int(phys.max()) + 1 if len(phys) else 0)
    out = np.full(size, -1, dtype=np.int64)
    out[phys] = np.arange(len(phys), dtype=np.int64)
    return out


def update_index(store: Store, vindex: VectorIndex) -> int:
    """Add to an ``ivfpq`` index of `store` the live rows of segments appended since it was
    built; rows superseded or removed since are masked (mapped to no item). The trained cells
    and codebooks are kept (no rebuild).

    Returns:
        how many rows were added.

    Raises:
        StaleIndexError: the index is not an ``ivfpq`` index of this store, or a segment it
            covers is gone (the store was compacted): rebuild it.
    """
    segments = store.segment_ids()
    covered = vindex.segments or []
    if vindex.kind != "ivfpq" or vindex.row_of_id is None or segments[:len(covered)] != covered:
        raise StaleIndexError(f"{store.root}: the saved {vindex.kind} index covers segments that are gone; "
                              f"rebuild it with `artenc index {store.root}`")
    phys = store_rows(store)
    known = len(vindex.row_of_id)  # ids below this were live when added (or masked since)
    new = np.flatnonzero(phys >= known)
    if len(new) and vindex.read_only:
        raise StaleIndexError(f"{store.root}: a memory-mapped index cannot take new rows; load it with mmap=False")
    if len(new):
        _add_blocks(vindex.index, store, phys[new], rows=new)
    vindex.row_of_id = _row_of_id(phys, known)
    vindex.source, vindex._vectors, vindex.segments, vindex.revision = store, None, segments, store.revision
    masked = int(vindex.index.ntotal) - len(phys)
    if masked:
        log.info("ivfpq index: %d superseded or removed rows masked (they go away when the store is "
                 "compacted and the index rebuilt)", masked)
    return len(new)


def index_paths(store: Store) -> tuple[Path, Path]:
    """The saved index of `store`: (`store.index_dir`/faiss.index, `store.index_dir`/index.json)."""
    return store.index_dir / "faiss.index", store.index_dir / INDEX_META_FILE


def save_index(store: Store, vindex: VectorIndex) -> Path:
    """Write the index and its metadata into the store (atomic renames; metadata last).
    ``ivfpq`` also records the segments and physical rows it covers."""
    faiss = load_faiss()
    data_path, meta_path = index_paths(store)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(data_path) as tmp:
        faiss.write_index(vindex.index, str(tmp))
    meta = {"kind": vindex.kind, "params": vindex.params, "count": vindex.ntotal,
            "dim": vindex.dim, "revision": store.revision}
    if vindex.row_of_id is not None:
        meta.update({"segments": vindex.segments, "physical_rows": len(vindex.row_of_id)})
    atomic_write_json(meta_path, meta)
    vindex.revision = store.revision
    return data_path


def saved_kind(store: Store) -> str | None:
    """The kind of the index saved in `store` (None when there is none)."""
    _, meta_path = index_paths(store)
    try:
        return json.loads(meta_path.read_text()).get("kind")
    except (OSError, json.JSONDecodeError):
        return None


def load_index(store: Store, *, mmap: bool = True) -> VectorIndex | None:
    """The saved index, None when there is none.

    An ``ivfpq`` index whose store has gained segments since is extended in memory
    (`update_index`, not saved; `artenc index` saves it); one that matches the store is
    memory-mapped when `mmap` (FAISS ``IO_FLAG_MMAP``: its inverted lists stay in the file).

    Raises:
        StaleIndexError: the store has changed (any other kind), or lost segments the
            ``ivfpq`` index covers.
    """
    data_path, meta_path = index_paths(store)
    if not meta_path.is_file() or not data_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    fresh = meta.get("revision") == store.revision and meta.get("count") == len(store)
    extendable = meta.get("kind") == "ivfpq" and meta.get("segments") is not None \
        and store.segment_ids()[:len(meta["segments"])] == meta["segments"]
    if not fresh and not extendable:
        raise StaleIndexError(
            f"{store.root}: the saved {meta.get('kind')} index was built from {meta.get('count')} vectors "
            f"(revision {meta.get('revision')}) but the store now holds {len(store)} (revision "
            f"{store.revision}); rebuild it with `artenc index {store.root}`"
        )
    faiss = load_faiss()
    params = meta.get("params", {})
    if meta["kind"] == "ivfpq":
        mapped = mmap and fresh
        index = faiss.read_index(str(data_path), faiss.IO_FLAG_MMAP if mapped else 0)
        faiss.extract_index_ivf(index).nprobe = int(params.get("nprobe", IVF_NPROBE))
        if meta.get("segments") is None:  # built from an array: ids are item rows
            vindex = VectorIndex(index, "ivfpq", params=params, revision=meta["revision"], source=store)
            vindex.read_only = mapped
            return vindex
        vindex = VectorIndex(index, "ivfpq", params=params, revision=meta["revision"], source=store,
                             row_of_id=np.full(int(meta["physical_rows"]), -1, dtype=np.int64),
                             segments=list(meta["segments"]))
        vindex.read_only = mapped
        added = update_index(store, vindex)
        if added:
            log.info("ivfpq index: %d new rows added (run `artenc index %s` to save them)", added, store.root)
        return vindex
    index = faiss.read_index(str(data_path))
    if meta["kind"] == "hnsw":
        index.hnsw.efSearch = int(params.get("efSearch", HNSW_EF_SEARCH))
    return VectorIndex(index, meta["kind"], store.vectors, params, meta["revision"], source=store)


def refresh_index(store: Store, kind: str = "auto", *, seed: int = 0) -> VectorIndex:
    """What `artenc index` saves: the saved ``ivfpq`` index extended with the store's new
    rows when `kind` is "auto" or "ivfpq" and it can be (no rebuild), else a new index
    (`build_store_index`; "auto" over a saved ``ivfpq`` index rebuilds an ``ivfpq`` one). A
    saved index with flat codes (`ivf_params`) is rebuilt with PQ codes once the store holds
    IVF_PQ_MIN_ROWS vectors or more."""
    if kind in ("auto", "ivfpq") and saved_kind(store) == "ivfpq":
        kind = "ivfpq"  # a rebuild keeps the kind
        try:
            saved = load_index(store, mmap=False)
        except StaleIndexError as exc:
            log.info("%s; rebuilding", exc)
        else:
            flat_outgrown = saved is not None and saved.params.get("codes") == "flat" \
                and len(store) >= IVF_PQ_MIN_ROWS
            if saved is not None and saved.row_of_id is not None and not flat_outgrown:
                return saved
    return build_store_index(store, kind, seed=seed)


def index_for_store(store: Store, kind: str | None = None) -> VectorIndex:
    """The saved index if fresh or extendable (and of `kind` when given), else one built in memory.

    A stale saved index is refused (StaleIndexError), never silently used.
    """
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    saved = load_index(store)
    if saved is not None and kind in (None, "auto", saved.kind):
        return saved
    return build_store_index(store, kind or "auto")
