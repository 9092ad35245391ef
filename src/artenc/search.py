"""Exact search on unit vectors: top-k, range search, range pairs and top-m pairs, in blocks.

The one home of exact search in artenc: the flat index (`artenc.index`), evaluation
(`artenc.evaluate`), kNN prediction (`artenc.predict`), duplicate candidates
(`artenc.dedup`), radius queries (`artenc.neighbors`, the web page) and cluster assignment
and DBSCAN's neighbourhood graph (`artenc.cluster`) all call these functions.

Conventions:

- Vectors are rows of a float32 matrix (n, dim), L2-normalised by the store, so an inner
  product is a cosine similarity in [-1, 1]. Row ids are int64 positions in the matrix.
- Every comparison of a cosine similarity with a threshold goes through
  `similarity_at_least`, which forgives float32 rounding (`SIM_TOLERANCE`): the stored
  self-product of a unit vector (e.g. 0.9999994) counts as >= 1.0, so byte-identical
  duplicates are found at threshold 1.0.
- Ties are broken by row id (smaller first), so results do not depend on block sizes.
- Memory is bounded: scores are computed one block of (queries x matrix rows) at a time,
  never an n x n matrix (`SCORE_BYTES`).
- Bad input raises `artenc.errors.ParameterError` naming the parameter.

Source: the blockwise idea (stream the database in blocks, keep a running top-k, collect
range results block by block) follows faiss ``contrib/exhaustive_search.py``
(``knn_ground_truth``, ``range_ground_truth``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from artenc.errors import ParameterError

SCORE_BYTES = 256 * 2**20  # one block of float32 scores (pair search); top-k uses a quarter
TOPK_SCORE_BYTES = SCORE_BYTES // 4  # + a negated copy and int64 argpartition indices: peak ~4x this
QUERY_BLOCK = 4096  # at most this many query rows per block
MATRIX_BLOCK = 65536  # at most this many matrix rows per block (top-k)
STREAM_BYTES = 32 * 2**20  # rows read at once from a row source (a `Store`): one float32 block of this size
SIM_TOLERANCE = 16 * float(np.finfo(np.float32).eps)  # 1.9e-6: float32 rounding of unit dots
# measured: self-products of random float32 unit vectors (dim 32..1280) are off from 1 by
# at most 6e-7 (5 eps); 16 eps leaves room for longer vectors.


# ---------------------------------------------------------------- input checks, policy


def as_unit_matrix(x: np.ndarray, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Check a matrix of vectors and return it as C-contiguous float32.

    Args:
        x: (n, dim) array of any floating dtype (float16/32/64); n may be 0.
        name: the parameter name used in errors.
        dim: the required width, if any.

    Returns:
        (n, dim) float32, C-contiguous (a view when `x` already is one).

    Raises:
        ParameterError(name): not 2-D, not floating point, wrong width, NaN or infinity.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ParameterError(name, f"must be a 2-D (n, dim) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(name, f"must hold floating-point vectors, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ParameterError(name, f"must have dim {dim}, got {x.shape[1]}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ParameterError(name, "contains NaN or infinite values")
    return x


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """A cosine similarity threshold in [-1, 1] as a float; ParameterError(name) otherwise."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be a cosine similarity in [-1, 1], got {threshold!r}") from None
    if not -1.0 <= value <= 1.0:  # also refuses NaN
        raise ParameterError(name, f"must be a cosine similarity in [-1, 1], got {threshold}")
    return value


def check_k(k: int, name: str = "k") -> int:
    """A neighbour count >= 1 as an int; ParameterError(name) otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(name, f"must be >= 1 (an integer), got {k!r}")
    return int(k)


def check_top_m(top_m: int, name: str = "top_m") -> int:
    """The top-m rule's neighbour count (0 = off) as an int; ParameterError(name) otherwise."""
    if isinstance(top_m, bool) or not isinstance(top_m, (int, np.integer)) or top_m < 0:
        raise ParameterError(name, f"must be >= 0 (each vector's top-m nearest are paired), got {top_m!r}")
    return int(top_m)


def similarity_at_least(sims: np.ndarray | float, threshold: float) -> np.ndarray | bool:
    """The one rule for "cosine similarity >= threshold": ``sims >= threshold - SIM_TOLERANCE``.

    Args:
        sims: cosine similarities, any shape (float32 or float64), or one float.
        threshold: cosine similarity in [-1, 1].

    Returns:
        bool array of the shape of `sims` (a bool for a scalar).

    The tolerance (16 float32 epsilons, ~1.9e-6) absorbs the rounding of float32 inner
    products of unit vectors: two byte-identical vectors whose stored product is 0.9999994
    count as similar at threshold 1.0. -inf (a masked score) is never at least a threshold.
    """
    return np.greater_equal(sims, threshold - SIM_TOLERANCE)


def cap_cosine(sims: np.ndarray | float) -> np.ndarray | float:
    """Cosine similarities of float32 unit vectors capped at 1.0: rounding can give 1.0000001
    for a vector with itself, and a cosine is never above 1 (-inf padding is kept)."""
    return np.minimum(sims, np.float32(1.0)) if isinstance(sims, np.ndarray) else min(float(sims), 1.0)


def iter_blocks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` covering range(n) (none when n == 0)."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def limit_threads(threads: int = 1) -> threadpool_limits:
    """Limit the BLAS and OpenMP thread pools to `threads` (threadpoolctl).

    Use as a context manager (``with limit_threads(1): ...``): the previous limits come
    back on exit. Called without ``with`` (a worker thread's initializer) the limits stay.
    OpenMP limits (FAISS) apply to the calling thread; OpenBLAS limits to the process.

    Why: on shared, busy cores BLAS threads spin-wait; measured at load 6 on 2 cores, a
    500x500 eigh takes 3.7 s with 2 threads and 0.02 s with 1. Worker processes and
    threads that each do their own products use one thread (or a few) each.

    Source: threadpoolctl's ``threadpool_limits``.
    """
    if threads < 1:
        raise ParameterError("threads", f"must be >= 1, got {threads}")
    return threadpool_limits(limits=int(threads))


class ArrayRows:
    """A matrix seen through the store's row API, so code written for a `Store` (blocks from
    `vector_blocks`, gathers by `vectors_at`) also takes an in-memory array.

    Args:
        x: (n, dim) float unit vectors (checked and cast to float32 once, `as_unit_matrix`).
    """

    def __init__(self, x: np.ndarray, name: str = "vectors") -> None:
        self.vectors = as_unit_matrix(x, name)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def vector_blocks(self, rows: np.ndarray | None = None, block_rows: int = MATRIX_BLOCK
                      ) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, float32 (m, dim) block) over `rows` (default all), in order."""
        n = len(self) if rows is None else len(rows)
        for block in iter_blocks(n, block_rows):
            yield block.start, (self.vectors[block] if rows is None else self.vectors[np.asarray(rows)[block]])

    def vectors_at(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) rows of the matrix."""
        return self.vectors[np.asarray(rows, dtype=np.int64)]


# ---------------------------------------------------------------- top-k


def _block_top(scores: np.ndarray, col_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `scores` (r, c): the k largest (k <= c), ordered by (-score, col id).

    Returns (scores (r, k), ids (r, k)) with ids taken from `col_ids` (c,). Exact under
    ties: argpartition chooses the candidates; a row whose k-th value is tied beyond the
    cut is re-done with a full sort so the smaller ids win.
    """
    r, c = scores.shape
    if k < c:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        crowded = np.count_nonzero(scores >= kth[:, None], axis=1) > k
        if crowded.any():
            rows = np.flatnonzero(crowded)
            part[rows] = np.lexsort((np.broadcast_to(col_ids, (len(rows), c)), -scores[rows]), axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(c), (r, c))
    top = np.take_along_axis(scores, part, axis=1)
    ids = col_ids[part]
    order = np.lexsort((ids, -top), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(ids, order, axis=1)


class VectorRows(Protocol):
    """What `top_k` and `range_search` also search: unit vectors read in blocks (a `Store`,
    streamed from its segment files; an `ArrayRows`)."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def vector_blocks(self, rows: np.ndarray | None = None, block_rows: int = MATRIX_BLOCK
                      ) -> Iterator[tuple[int, np.ndarray]]: ...


def _row_source(matrix: np.ndarray | VectorRows) -> bool:
    """True for a row source read in blocks (a `Store`, `ArrayRows`: `vector_blocks`, `dim`,
    `len`), False for an in-memory array."""
    return hasattr(matrix, "vector_blocks")


def _stream_rows(matrix: np.ndarray | VectorRows, block_rows: int) -> int:
    """Rows per block of `matrix`: `block_rows`, at most STREAM_BYTES of a row source's vectors."""
    if _row_source(matrix):
        return max(1, min(int(block_rows), STREAM_BYTES // (4 * max(1, int(matrix.dim)))))
    return max(1, int(block_rows))


def _matrix_blocks(matrix: np.ndarray | VectorRows, block_rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, float32 block) of `matrix`, `block_rows` rows at a time: slices of an array, or
    blocks read from a row source (`_row_source`), each read once, of at most STREAM_BYTES
    (the block being scored and the next one being read are both alive: 2 x STREAM_BYTES)."""
    if _row_source(matrix):
        for start, block in matrix.vector_blocks(block_rows=_stream_rows(matrix, block_rows)):
            yield slice(start, start + len(block)), block
    else:
        for cols in iter_blocks(len(matrix), block_rows):
            yield cols, matrix[cols]


def _searched(matrix: np.ndarray | VectorRows, check_matrix: bool) -> tuple[np.ndarray | VectorRows, int]:
    """(matrix, dim) of what `top_k` / `range_search` search: a row source as it is (its
    vectors are unit rows, checked when stored), an array checked by `as_unit_matrix` (or,
    with `check_matrix` False, only for being a float32 (n, dim) array)."""
    if _row_source(matrix):
        return matrix, int(matrix.dim)
    if check_matrix:
        matrix = as_unit_matrix(matrix, "matrix")
    elif matrix.ndim != 2 or matrix.dtype != np.float32:
        raise ParameterError("matrix", f"must be a float32 (n, dim) array, got {matrix.dtype} {matrix.shape}")
    return matrix, int(matrix.shape[1])


def top_k(
    queries: np.ndarray,
    matrix: np.ndarray | VectorRows,
    k: int,
    *,
    exclude: Sequence[int] | np.ndarray | None = None,
    query_block: int | None = None,
    matrix_block: int = MATRIX_BLOCK,
    check_matrix: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every query by cosine similarity against `matrix`, in blocks.

    Args:
        queries: (m, dim) float vectors (cast to float32).
        matrix: (n, dim) float vectors (cast to float32); n may be 0. Or a row source read in
            blocks (a `Store`: its vectors are streamed from the segment files, never all in
            memory; read once per block of queries).
        k: neighbours per query (>= 1; k > n is allowed and padded).
        exclude: (m,) int64, a row of `matrix` to leave out of query i's neighbours
            (its own row: leave-one-out), -1 for none.
        query_block, matrix_block: block sizes (rows); the default query block keeps one
            block of scores under TOPK_SCORE_BYTES.
        check_matrix: False skips the O(n * dim) NaN scan of `matrix` when it was checked
            once already (an index's own vectors; the shape and dim are still checked).

    Returns:
        (similarities (m, k) float32, ids (m, k) int64 rows of `matrix`), most similar
        first, ties by smaller id; slots beyond the available rows hold -inf and -1.

    Raises:
        ParameterError: bad `queries` / `matrix` (see `as_unit_matrix`), `k` < 1, or an
        `exclude` of the wrong length.

    Memory: one (query_block, matrix_block) block of scores plus the running top-k (and one
    block of the row source's vectors).
    Source: faiss ``contrib/exhaustive_search.knn_ground_truth`` (database in blocks,
    merged top-k).
    """
    matrix, dim = _searched(matrix, check_matrix)
    queries = as_unit_matrix(queries, "queries", dim)
    k = check_k(k)
    m, n = len(queries), len(matrix)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if len(exclude) != m:
            raise ParameterError("exclude", f"must hold one row id per query ({m}), got {len(exclude)}")
    sims = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    kk = min(k, n)
    if m == 0 or kk == 0:
        return sims, ids
    nb = max(1, min(n, _stream_rows(matrix, matrix_block)))
    qb = query_block or max(1, min(QUERY_BLOCK, TOPK_SCORE_BYTES // (4 * nb)))
    col_ids = np.arange(n, dtype=np.int64)
    for rows in iter_blocks(m, qb):
        best_s = best_i = None
        for cols, block in _matrix_blocks(matrix, nb):
            scores = queries[rows] @ block.T
            if exclude is not None:
                ex = exclude[rows]
                r = np.flatnonzero((ex >= cols.start) & (ex < cols.stop))
                scores[r, ex[r] - cols.start] = -np.inf
            s, i = _block_top(scores, col_ids[cols], min(kk, cols.stop - cols.start))
            if best_s is not None:
                s, i = np.hstack([best_s, s]), np.hstack([best_i, i])
                order = np.lexsort((i, -s), axis=1)[:, :kk]
                s, i = np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
            best_s, best_i = s, i
        best_i = np.where(np.isneginf(best_s), -1, best_i)  # left-out rows are not neighbours
        sims[rows, :best_s.shape[1]], ids[rows, :best_s.shape[1]] = cap_cosine(best_s), best_i
    return sims, ids


def top_k_of_candidates(
    queries: np.ndarray, candidates: np.ndarray, matrix: np.ndarray, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact re-scoring: the top-k of each query among its own candidate rows of `matrix`.

    Args:
        queries: (m, dim) float32 unit vectors.
        candidates: (m, c) int64 rows of `matrix` (e.g. from an approximate index), -1 = none.
        matrix: (n, dim) float32 unit vectors.
        k: how many to keep (k <= c).

    Returns:
        (similarities (m, k) float32 exact cosines, ids (m, k) int64), most similar first,
        ties by smaller id, missing candidates (-1, -inf) last.

    Memory: an (m, c, dim) gather; callers pass a few hundred queries at a time.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    safe = np.where(cand >= 0, cand, 0)
    scores = np.einsum("md,mcd->mc", queries, matrix[safe]).astype(np.float32)
    scores[cand < 0] = -np.inf
    order = np.lexsort((np.where(cand >= 0, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
    return cap_cosine(np.take_along_axis(scores, order, axis=1)), np.take_along_axis(cand, order, axis=1)


# ---------------------------------------------------------------- range (one query)


def range_search(
    query: np.ndarray,
    matrix: np.ndarray | VectorRows,
    threshold: float,
    *,
    limit: int | None = None,
    exclude: int | None = None,
    matrix_block: int = MATRIX_BLOCK,
    check_matrix: bool = True,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact range search for one query: every row of `matrix` with cosine >= `threshold`.

    Args:
        query: (dim,) or (1, dim) float vector (cast to float32).
        matrix: (n, dim) float vectors (cast to float32); n may be 0. Or a row source read in
            blocks (a `Store`, its vectors streamed from the segment files, as in `top_k`).
        threshold: cosine similarity in [-1, 1], compared by `similarity_at_least` (so a
            byte-identical copy counts at threshold 1.0).
        limit: most rows returned (the most similar ones), or None for all of them.
        exclude: a row of `matrix` left out (the query's own row), or None.
        matrix_block: rows of `matrix` scored at once.
        check_matrix: False skips the NaN scan of `matrix` (an index's own vectors).

    Returns:
        (similarities (r,) float32 capped at 1.0, ids (r,) int64 rows, total: int, how many
        rows are within the threshold before `limit`), most similar first, ties by smaller id.

    Raises:
        ParameterError: bad `query` / `matrix`, `threshold` outside [-1, 1], `limit` < 1.

    Memory: one block of `matrix_block` scores plus the rows kept (at most about 2 x
    `limit` between blocks when a limit is given).
    Source: faiss ``contrib/exhaustive_search.range_ground_truth`` (database in blocks).
    """
    matrix, dim = _searched(matrix, check_matrix)
    q = as_unit_matrix(np.asarray(query).reshape(1, -1), "query", dim)[0]
    threshold = check_threshold(threshold)
    if limit is not None:
        limit = check_k(limit, "limit")
    keep_s, keep_i, total = np.zeros(0, np.float32), np.zeros(0, np.int64), 0
    for cols, block in _matrix_blocks(matrix, matrix_block):
        scores = block @ q
        hit = np.flatnonzero(similarity_at_least(scores, threshold))
        ids = hit + cols.start
        if exclude is not None:
            mine = ids != exclude
            hit, ids = hit[mine], ids[mine]
        total += len(ids)
        keep_s, keep_i = np.concatenate([keep_s, scores[hit]]), np.concatenate([keep_i, ids])
        if limit is not None and len(keep_i) > 2 * limit:
            order = np.lexsort((keep_i, -keep_s))[:limit]
            keep_s, keep_i = keep_s[order], keep_i[order]
    order = np.lexsort((keep_i, -keep_s))[:limit]
    return cap_cosine(keep_s[order].astype(np.float32)), keep_i[order], total


# ---------------------------------------------------------------- pairs


@dataclass
class Pairs:
    """Pairs of rows (i < j) with their cosine similarity (and inlier counts once verified).

    Attributes:
        i, j: (p,) int64 rows, i < j.
        sim: (p,) float32 cosine similarities.
        inliers: (p,) int64 RANSAC inlier counts (`artenc.verify`), or None.
    """

    i: np.ndarray
    j: np.ndarray
    sim: np.ndarray
    inliers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.i)

    def select(self, mask: np.ndarray) -> Pairs:
        """The pairs where `mask` (bool (p,) or indices) holds."""
        inl = None if self.inliers is None else self.inliers[mask]
        return Pairs(self.i[mask], self.j[mask], self.sim[mask], inl)

    @classmethod
    def concat(cls, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Pairs:
        """Pairs from (i, j, sim) parts, in order (int64 rows, float32 similarities)."""
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        i, j, s = (np.concatenate(x) for x in zip(*parts, strict=True))
        return cls(i.astype(np.int64), j.astype(np.int64), s.astype(np.float32))

    def unique(self, n: int) -> Pairs:
        """Each pair once (its first occurrence), in the order of first occurrences; n = row count."""
        _, first = np.unique(self.i * n + self.j, return_index=True)
        return self.select(np.sort(first))


def check_pair_count(count: int, threshold: float, max_pairs: int | None) -> None:
    """ParameterError("threshold") when more than `max_pairs` pairs reach it (None: no bound)."""
    if max_pairs is not None and count > max_pairs:
        raise ParameterError(
            "threshold", f"{threshold} is too low: more than {max_pairs} pairs have a cosine similarity "
            "at least that high (far more than near-duplicates); raise it"
        )


def block_range_pairs(
    scores: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, threshold: float, *, upper: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of one block of scores whose similarity is at least `threshold`.

    Args:
        scores: (r, c) float32 cosine similarities of rows `row_ids` (r,) against rows
            `col_ids` (c,) of one matrix.
        threshold: cosine similarity (compared by `similarity_at_least`).
        upper: keep only j > i (each pair once when blocks cover the upper triangle);
            False keeps every i != j as (min, max), for blocks that may hold both orders.

    Returns:
        (i, j, sim) arrays with i < j: int64, int64, float32 (duplicates possible when
        ``upper=False``; see `Pairs.unique`).
    """
    r, c = np.nonzero(similarity_at_least(scores, threshold))
    i, j = row_ids[r], col_ids[c]
    keep = j > i if upper else i != j
    return np.minimum(i, j)[keep], np.maximum(i, j)[keep], cap_cosine(scores[r[keep], c[keep]])


def block_top_m_pairs(
    scores: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, top_m: int, floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each row's `top_m` highest columns with similarity at least `floor`, as pairs (min, max).

    Args:
        scores: (r, c) float32 cosine similarities of rows `row_ids` (r,) against `col_ids`
            (c,); the caller sets a row's own column to -inf (it is not its own neighbour).
        top_m: neighbours per row (ties by smaller column id).
        floor: cosine similarity (compared by `similarity_at_least`).

    Returns:
        (i, j, sim) with i < j (int64, int64, float32), or None when top_m or c is 0.
    """
    m = min(top_m, scores.shape[1])
    if m <= 0:
        return None
    s, j = _block_top(scores, np.asarray(col_ids, dtype=np.int64), m)
    ok = similarity_at_least(s, floor)
    i = np.broadcast_to(np.asarray(row_ids, dtype=np.int64)[:, None], j.shape)[ok]
    j, s = j[ok], s[ok]
    keep = i != j
    i, j, s = i[keep], j[keep], s[keep]
    return np.minimum(i, j), np.maximum(i, j), cap_cosine(s)


def similar_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    top_m: int = 0,
    floor: float | None = None,
    max_pairs: int | None = None,
    score_bytes: int = SCORE_BYTES,
) -> Pairs:
    """Exact pairs of rows: every i < j with cosine >= `threshold` (range search), plus,
    with `top_m` > 0, every pair where one row is among the other's `top_m` nearest with
    cosine >= `floor`.

    Args:
        vectors: (n, dim) float unit vectors (cast to float32).
        threshold: cosine similarity in [-1, 1].
        top_m: nearest neighbours per row that become pairs (0: range search only).
        floor: cosine similarity for the top-m pairs (default: `threshold`).
        max_pairs: refuse (ParameterError("threshold")) when more range pairs than this.
        score_bytes: memory bound of one block of float32 scores.

    Returns:
        `Pairs` (i < j, each pair once): range pairs block by block in row order, with
        each block's top-m pairs after its range pairs.

    Raises:
        ParameterError: bad `vectors`, `threshold`, `floor`, `top_m`; too many pairs.

    Without top_m only the upper triangle is computed (n^2 / 2 products); the top-m rule
    needs whole rows (n^2). Blocks of rows keep (block x n) scores under `score_bytes`.
    Source: faiss ``contrib/exhaustive_search.range_ground_truth`` (blockwise range search).
    """
    x = as_unit_matrix(vectors)
    threshold = check_threshold(threshold)
    top_m = check_top_m(top_m)
    floor = threshold if floor is None else check_threshold(floor, "floor")
    n = len(x)
    block = int(max(16, min(1024, score_bytes // (4 * max(n, 1)))))  # small: closer to n^2/2 products
    parts, count = [], 0
    for rows in iter_blocks(n, block):
        start = 0 if top_m else rows.start  # top-m needs whole rows, the range part the upper triangle
        scores = x[rows] @ x[start:].T
        row_ids, col_ids = np.arange(rows.start, rows.stop), np.arange(start, n)
        if top_m:
            r = np.arange(rows.stop - rows.start)
            scores[r, r + rows.start - start] = -np.inf  # not its own neighbour
        part = block_range_pairs(scores, row_ids, col_ids, threshold, upper=True)
        parts.append(part)
        count += len(part[0])
        check_pair_count(count, threshold, max_pairs)
        if top_m:
            top = block_top_m_pairs(scores, row_ids, col_ids, top_m, floor)
            if top is not None:
                parts.append(top)
    pairs = Pairs.concat(parts)
    return pairs.unique(n) if top_m else pairs
