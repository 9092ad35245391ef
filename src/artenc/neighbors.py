"""Queries against a store: resolve QUERY arguments, nearest neighbours, works within a
radius, pair similarity.

A query is either a path already in the store (its stored vector is used, and it is
excluded from its own neighbours) or a new image file, embedded with the store's own
model and preprocessing (`encoder_for_store`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import MIN_INLIERS, SIMILAR_K, SIMILAR_LIMIT, VERIFY_TOP
from artenc.errors import ParameterError, UsageError
from artenc.images import absolute
from artenc.index import VectorIndex, load_index
from artenc.labels import plain
from artenc.search import cap_cosine, check_k, check_threshold, range_search, top_k
from artenc.verify import verify_queries

if TYPE_CHECKING:  # torch (the encoder runtime) is imported only when a query is a new image
    from artenc.runtime import Encoder
    from artenc.store import Store

    # an encoder, or a zero-argument callable returning one (called only when some query is a new file)
    EncoderSource = Encoder | Callable[[], Encoder] | None


@dataclass(frozen=True)
class Query:
    """One resolved query: what the user typed, the image file, its vector, its store row."""

    name: str
    path: str
    vector: np.ndarray
    item: int | None  # row in store.items when the query is a stored work


def _store_row(store: Store, query: str) -> int | None:
    row = store.index_of([str(absolute(query))])[0]
    if row is not None:
        return row
    matches = np.flatnonzero(store.item_columns(["relpath"])["relpath"].to_numpy() == query)
    return int(matches[0]) if len(matches) == 1 else None


def resolve_queries(store: Store, queries: list[str], encoder: EncoderSource = None) -> list[Query]:
    """Stored paths (absolute, or relative to the embedded folder) or new image files.

    New image files are embedded with `encoder` (an `Encoder`, or a zero-argument callable
    returning one, called only when some query is a new file; default: the store's own
    model on the best device). Raises UsageError for an empty list or an unusable query.
    """
    if not queries:
        raise UsageError("give at least one QUERY (an image file or a path in the store)")
    rows = [_store_row(store, q) for q in queries]
    new = [q for q, r in zip(queries, rows, strict=True) if r is None]
    for q in new:
        if not Path(q).is_file():
            raise UsageError(f"{q}: not in the store and no such image file")
    new_vectors: dict[str, np.ndarray] = {}
    if new:  # torch and the encoder runtime only when a new image is embedded
        from artenc.embedding import encode_files
        from artenc.runtime import Encoder, encoder_for_store

        if encoder is None:
            encoder = encoder_for_store(store.meta)
        elif callable(encoder) and not isinstance(encoder, Encoder):
            encoder = encoder()
        vectors, errors = encode_files(new, encoder)
        for q, v, err in zip(new, vectors, errors, strict=True):
            if err:
                raise UsageError(f"{q}: cannot use as a query ({err})")
            new_vectors[q] = v
    stored = [r for r in rows if r is not None]
    paths = dict(zip(stored, store.item_columns(["path"])["path"].iloc[stored], strict=True))
    vectors = dict(zip(stored, store.vectors_at(stored), strict=True))
    out = []
    for q, r in zip(queries, rows, strict=True):
        if r is None:
            out.append(Query(q, str(absolute(q)), new_vectors[q], None))
        else:
            out.append(Query(q, str(paths[r]), vectors[r], r))
    return out


def labels_of(store: Store, rows: np.ndarray) -> list[dict]:
    """Label columns of the given item rows as JSON-ready dicts (`labels.plain`: None for
    None/NaN, blank strings as stored)."""
    cols = store.label_columns
    if not cols:
        return [{} for _ in rows]
    frame = store.item_columns(cols).iloc[np.asarray(rows, dtype=np.int64)]
    return [{c: plain(v) for c, v in rec.items()} for rec in frame.to_dict("records")]


def nearest(index: VectorIndex | Store, queries: list[Query], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (ids, similarities) of its k nearest stored works, itself excluded; searched
    in `index`, or, given the `Store` itself, by an exact blockwise search of its vectors read
    from the segment files block by block (`artenc.search.top_k`; never all in memory)."""
    k = check_k(k)
    matrix = np.stack([q.vector for q in queries])
    sims, ids = index.search(matrix, k + 1) if isinstance(index, VectorIndex) else top_k(matrix, index, k + 1)
    out = []
    for q, s, i in zip(queries, sims, ids, strict=True):
        keep = (i >= 0) & (i != (q.item if q.item is not None else -1))
        out.append((i[keep][:k], s[keep][:k]))
    return out


def within_radius(store: Store, queries: list[Query], radius: float,
                  limit: int = SIMILAR_LIMIT) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per query: (ids, similarities, total) of the stored works with cosine >= `radius`.

    Exact blockwise range search over the stored vectors (`artenc.search.range_search`,
    compared by `similarity_at_least`; the vectors read block by block from the segment files,
    once per query, never all in memory), the query's own row excluded; at most `limit` works,
    the most similar first (ties by smaller row); `total` counts every work within the radius.
    """
    out = []
    for q in queries:
        sims, ids, total = range_search(q.vector, store, radius, limit=limit, exclude=q.item)
        out.append((ids, sims, total))
    return out


def rerank_verified(ids: np.ndarray, sims: np.ndarray, inliers: np.ndarray, min_inliers: int) -> np.ndarray:
    """Order candidates: verified ones (>= min_inliers) by inliers, then the rest by similarity."""
    verified = inliers >= min_inliers
    return np.lexsort((-sims, -np.where(verified, inliers, 0), ~verified))


@dataclass(frozen=True)
class Neighbor:
    """One stored work found near a query.

    Attributes:
        row: its row in the store (`Store.items`, `Store.vectors`).
        path: its absolute path.
        similarity: cosine similarity to the query (float, in [-1, 1]).
        labels: its label columns (missing values are None).
        inliers: RANSAC inliers against the query when verification ran, else None.
    """

    row: int
    path: str
    similarity: float
    labels: dict
    inliers: int | None = None

    def to_dict(self) -> dict:
        doc = {"path": self.path, "similarity": round(float(self.similarity), 6), "labels": self.labels}
        if self.inliers is not None:
            doc["inliers"] = int(self.inliers)
        return doc


@dataclass(frozen=True)
class QueryNeighbors:
    """The neighbours of one query, nearest first.

    Attributes:
        query: the query's absolute path.
        row: its store row when the query is a stored work (excluded from its own
            neighbours), else None.
        neighbors: up to k `Neighbor`s, by decreasing similarity (verified first with
            verification); with a radius, the works within it (at most the limit).
        within: with a radius, how many stored works are within it (may exceed
            len(neighbors) when the limit cut the list); None for a top-k query.
    """

    query: str
    row: int | None
    neighbors: list[Neighbor]
    within: int | None = None

    @property
    def in_store(self) -> bool:
        return self.row is not None

    @property
    def rows(self) -> np.ndarray:
        """(k,) int64 store rows of the neighbours."""
        return np.array([n.row for n in self.neighbors], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        return [n.path for n in self.neighbors]

    @property
    def truncated(self) -> bool:
        """True when a radius query found more works than its limit listed."""
        return self.within is not None and self.within > len(self.neighbors)

    def to_dict(self) -> dict:
        doc = {"query": self.query, "in_store": self.in_store, "neighbors": [n.to_dict() for n in self.neighbors]}
        if self.within is not None:
            doc["within"] = int(self.within)
        return doc


@dataclass(frozen=True)
class SimilarResult:
    """`similar`'s result: one `QueryNeighbors` per query, in the order given.

    Attributes:
        results: one `QueryNeighbors` per query.
        radius: the cosine similarity of a radius query (every work at least this similar),
            or None for top-k; limit: the most works listed per query with a radius.

    `to_dict()` is the JSON document `artenc similar` prints (with a radius it also holds
    `radius`, `limit` and each result's `within` count).
    """

    results: list[QueryNeighbors]
    radius: float | None = None
    limit: int | None = None

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)

    def __getitem__(self, i: int) -> QueryNeighbors:
        return self.results[i]

    def to_dict(self) -> dict:
        doc = {"results": [r.to_dict() for r in self.results]}
        if self.radius is not None:
            doc.update(radius=self.radius, limit=self.limit)
        return doc


def similar(
    store: Store,
    queries: list[str],
    k: int = SIMILAR_K,
    index: VectorIndex | None = None,
    *,
    verify: bool = False,
    verify_top: int = VERIFY_TOP,
    min_inliers: int = MIN_INLIERS,
    workers: int | None = None,
    encoder: EncoderSource = None,
    radius: float | None = None,
    limit: int = SIMILAR_LIMIT,
) -> SimilarResult:
    """The k most cosine-similar stored works of each query, or every work within a radius.

    Args:
        store: the store searched.
        queries: stored paths (absolute, or relative to the embedded folder) or new image
            files (embedded with the store's model, or `encoder` when given).
        k: neighbours per query (>= 1).
        index: a `VectorIndex` over the store (default: the saved one, `artenc index`; without
            one, an exact blockwise search of the vectors read from the store block by block:
            no index is built for one call, and memory stays at one block).
        verify: re-rank the top `verify_top` candidates by geometric verification (SIFT +
            RANSAC, `artenc.verify`); candidates with >= `min_inliers` inliers come first.
        workers: verification processes (default: one per core).
        radius: cosine similarity in [-1, 1]: return every stored work with cosine >= radius
            (`artenc.search.similarity_at_least`: byte-identical copies count at 1.0) instead
            of the top k, by an exact blockwise range search over the stored vectors (no
            index); `k` is then not used. Not combined with `verify`.
        limit: with a radius, the most works listed per query (the most similar); each
            result's `within` counts them all.

    Returns:
        `SimilarResult`; similarities are cosine similarities of the stored float32 vectors,
        most similar first (ties by smaller row).

    Raises:
        UsageError: empty store, no query, or a query that is neither stored nor a readable image.
        ParameterError: k < 1, radius outside [-1, 1] or with verify, limit < 1.
    """
    k, verify_top = check_k(k), check_k(verify_top, "verify_top")
    if radius is not None:
        radius, limit = check_threshold(radius, "radius"), check_k(limit, "limit")
        if verify:
            raise ParameterError("radius", "cannot be combined with verify (verification re-ranks a top-k list)")
    if verify and min_inliers < 4:
        raise ParameterError("min_inliers", f"must be >= 4 (a homography needs 4 points), got {min_inliers}")
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    resolved = resolve_queries(store, queries, encoder)
    paths = store.item_columns(["path"])["path"].array  # arrow-backed: no Python string per work
    if radius is not None:
        return SimilarResult([
            QueryNeighbors(q.path, q.item, [Neighbor(int(i), str(paths[i]), float(s), lab)
                                            for i, s, lab in zip(ids, sims, labels_of(store, ids), strict=True)],
                           total)
            for q, (ids, sims, total) in zip(resolved, within_radius(store, resolved, radius, limit), strict=True)
        ], radius, limit)
    index = index if index is not None else load_index(store)
    found = nearest(index if index is not None else store, resolved, max(k, verify_top) if verify else k)
    inliers: list[np.ndarray | None] = [None] * len(found)
    if verify:
        counts = verify_queries(store, [q.path for q in resolved], [ids for ids, _ in found], workers,
                                min_inliers=min_inliers)
        orders = [rerank_verified(ids, sims, c, min_inliers) for (ids, sims), c in zip(found, counts, strict=True)]
        found = [(ids[o], sims[o]) for (ids, sims), o in zip(found, orders, strict=True)]
        inliers = [c[o] for c, o in zip(counts, orders, strict=True)]
    results = []
    for q, (ids, sims), inl in zip(resolved, found, inliers, strict=True):
        ids, sims = ids[:k], sims[:k]
        counts_k = [None] * len(ids) if inl is None else [int(c) for c in inl[:k]]
        neighbors = [
            Neighbor(int(i), str(paths[i]), float(s), lab, c)
            for i, s, lab, c in zip(ids, sims, labels_of(store, ids), counts_k, strict=True)
        ]
        results.append(QueryNeighbors(q.path, q.item, neighbors))
    return SimilarResult(results)


@dataclass(frozen=True)
class PairResult:
    """Cosine similarity of two works; `to_dict()` is the JSON document `artenc pair` prints."""

    a: str
    b: str
    similarity: float
    rows: tuple[int | None, int | None] = (None, None)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "similarity": round(float(self.similarity), 6)}


def pair_similarity(store: Store, a: str, b: str, encoder: EncoderSource = None) -> PairResult:
    """Cosine similarity (float in [-1, 1]) of two works: stored paths or new image files.

    Two stored works with the same content (equal sha256) have similarity exactly 1.0, as in
    `artenc.dedup` (float32 rounding would give e.g. 0.9999995).

    Raises UsageError when either is neither stored nor a readable image.
    """
    qa, qb = resolve_queries(store, [a, b], encoder)
    sim = cap_cosine(float(np.dot(qa.vector, qb.vector)))
    if qa.item is not None and qb.item is not None:
        sha = store.item_columns(["sha256"])["sha256"].to_numpy()  # this column only
        if isinstance(sha[qa.item], str) and sha[qa.item] == sha[qb.item]:
            sim = 1.0
    return PairResult(qa.path, qb.path, sim, (qa.item, qb.item))
