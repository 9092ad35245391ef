"""Queries against a store: resolve QUERY arguments, nearest neighbours, pair similarity.

A query is either a path already in the store (its stored vector is used, and it is
excluded from its own neighbours) or a new image file, embedded with the store's own
model and preprocessing (`encoder_for_store`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import MIN_INLIERS, SIMILAR_K, VERIFY_TOP
from artenc.errors import UsageError
from artenc.images import absolute

if TYPE_CHECKING:
    from artenc.index import VectorIndex
    from artenc.store import Store


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
    matches = np.flatnonzero(store.items["relpath"].to_numpy() == query)
    return int(matches[0]) if len(matches) == 1 else None


def resolve_queries(store: Store, queries: list[str]) -> list[Query]:
    """Stored paths (absolute, or relative to the embedded folder) or new image files."""
    if not queries:
        raise UsageError("give at least one QUERY (an image file or a path in the store)")
    rows = [_store_row(store, q) for q in queries]
    new = [q for q, r in zip(queries, rows, strict=True) if r is None]
    for q in new:
        if not Path(q).is_file():
            raise UsageError(f"{q}: not in the store and no such image file")
    new_vectors: dict[str, np.ndarray] = {}
    if new:
        from artenc.embedding import encode_files
        from artenc.runtime import encoder_for_store

        vectors, errors = encode_files(new, encoder_for_store(store.meta))
        for q, v, err in zip(new, vectors, errors, strict=True):
            if err:
                raise UsageError(f"{q}: cannot use as a query ({err})")
            new_vectors[q] = v
    paths = store.items["path"].to_numpy()
    out = []
    for q, r in zip(queries, rows, strict=True):
        if r is None:
            out.append(Query(q, str(absolute(q)), new_vectors[q], None))
        else:
            out.append(Query(q, str(paths[r]), store.vectors[r], r))
    return out


def labels_of(store: Store, rows: np.ndarray) -> list[dict]:
    """Label columns of the given item rows as plain dicts (missing values become None)."""
    cols = store.label_columns
    if not cols:
        return [{} for _ in rows]
    frame = store.items.iloc[np.asarray(rows, dtype=np.int64)][cols]
    return [{c: _plain(v) for c, v in rec.items()} for rec in frame.to_dict("records")]


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def nearest(index: VectorIndex, queries: list[Query], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (ids, similarities) of its k nearest stored works, itself excluded."""
    if k < 1:
        raise UsageError(f"-k must be >= 1, got {k}")
    matrix = np.stack([q.vector for q in queries])
    sims, ids = index.search(matrix, k + 1)
    out = []
    for q, s, i in zip(queries, sims, ids, strict=True):
        keep = (i >= 0) & (i != (q.item if q.item is not None else -1))
        out.append((i[keep][:k], s[keep][:k]))
    return out


def rerank_verified(ids: np.ndarray, sims: np.ndarray, inliers: np.ndarray, min_inliers: int) -> np.ndarray:
    """Order candidates: verified ones (>= min_inliers) by inliers, then the rest by similarity."""
    verified = inliers >= min_inliers
    return np.lexsort((-sims, -np.where(verified, inliers, 0), ~verified))


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
) -> dict:
    """`artenc similar` as a function: {"results": [{"query", "neighbors": [...]}]}.

    With `verify`, the top `verify_top` candidates are re-ranked by geometric verification.
    """
    from artenc.index import index_for_store

    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    resolved = resolve_queries(store, queries)
    index = index or index_for_store(store)
    found = nearest(index, resolved, max(k, verify_top) if verify else k)
    inliers: list[np.ndarray | None] = [None] * len(found)
    if verify:
        from artenc.verify import verify_queries

        counts = verify_queries(store, [q.path for q in resolved], [ids for ids, _ in found], workers)
        orders = [rerank_verified(ids, sims, c, min_inliers) for (ids, sims), c in zip(found, counts, strict=True)]
        found = [(ids[o], sims[o]) for (ids, sims), o in zip(found, orders, strict=True)]
        inliers = [c[o] for c, o in zip(counts, orders, strict=True)]
    paths = store.items["path"].to_numpy()
    results = []
    for q, (ids, sims), inl in zip(resolved, found, inliers, strict=True):
        ids, sims = ids[:k], sims[:k]
        neighbors = [
            {"path": str(paths[i]), "similarity": round(float(s), 6), "labels": lab}
            for i, s, lab in zip(ids, sims, labels_of(store, ids), strict=True)
        ]
        if inl is not None:
            for nb, count in zip(neighbors, inl[:k], strict=True):
                nb["inliers"] = int(count)
        results.append({"query": q.path, "in_store": q.item is not None, "neighbors": neighbors})
    return {"results": results}


def pair_similarity(store: Store, a: str, b: str) -> dict:
    """Cosine similarity of two works (stored paths or new image files)."""
    qa, qb = resolve_queries(store, [a, b])
    return {"a": qa.path, "b": qb.path, "similarity": round(float(np.dot(qa.vector, qb.vector)), 6)}
