"""Near-duplicate groups, keepers, leakage across a label column, unique copies.

Pipeline (`find_duplicates`):

1. Candidate pairs (i < j, cosine >= threshold) by range search, never an n x n
   matrix: exact blocked products of the upper triangle up to AUTO_EXACT_MAX vectors
   (at most ~256 MB of scores at a time); above that exact products within spherical
   k-means cells (`_cell_pairs`: each vector listed in its 2 nearest of sqrt(2n) cells; a
   pair whose works share no cell can be missed). With verification, each work's top_m
   nearest neighbours with cosine >= floor are candidates too (`artenc.defaults`:
   DUPLICATE_TOP_M, DUPLICATE_FLOOR).
2. Optional geometric verification (`artenc.verify`, on by default in the CLI): a
   candidate is a duplicate only with >= min_inliers RANSAC inliers.
3. Groups without chaining: a group is a clique, every member is a duplicate of every
   other member. Greedy: the work with the most duplicates opens a group, its duplicates
   join in decreasing similarity when they are duplicates of all members already in.
   Works left over open their own groups in turn. So A~B and B~C never put A and C in one
   group unless A~C too.
4. Keeper: highest resolution (width x height), then the largest file, then the path that
   sorts first. Every other member is listed with its similarity to the keeper.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import (
    DUPLICATE_FLOOR,
    DUPLICATE_TOP_M,
    MIN_INLIERS,
    VERIFY_DUPLICATES,
    duplicate_threshold,
)
from artenc.errors import UsageError
from artenc.index import AUTO_EXACT_MAX, as_unit_matrix, check_threshold, iter_blocks, load_faiss

if TYPE_CHECKING:
    import pandas as pd

    from artenc.store import Store

log = logging.getLogger(__name__)

MAX_PAIRS = 20_000_000  # 20M pairs = 320 MB of (i, j, sim); a lower threshold is refused
SCORE_BYTES = 256 * 2**20
CELL_PROBE = 2  # large n: each vector is listed in its 2 nearest k-means cells
CELL_TRAIN_PER_LIST = 32
CELL_ITERATIONS = 8
CELL_MIN_SIZE = 256


@dataclass
class Pairs:
    """Pairs of item rows (i < j) with their cosine similarity (and inliers once verified)."""

    i: np.ndarray
    j: np.ndarray
    sim: np.ndarray
    inliers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.i)

    def select(self, mask: np.ndarray) -> Pairs:
        inl = None if self.inliers is None else self.inliers[mask]
        return Pairs(self.i[mask], self.j[mask], self.sim[mask], inl)


def _check_count(count: int, threshold: float) -> None:
    """Bound memory: refuse thresholds that make near-duplicates of a large share of all pairs."""
    if count > MAX_PAIRS:
        raise UsageError(
            f"more than {MAX_PAIRS} pairs have cosine >= {threshold}: the threshold is too low for "
            "near-duplicates; raise --threshold"
        )


def _collect(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Pairs:
    if not parts:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    i, j, s = (np.concatenate(x) for x in zip(*parts, strict=True))
    return Pairs(i.astype(np.int64), j.astype(np.int64), s.astype(np.float32))


def _top_pairs(row_ids: np.ndarray, col_ids: np.ndarray, scores: np.ndarray, top_m: int, floor: float):
    """The top-m columns of each row of `scores` (self excluded by the caller) with score >= floor."""
    m = min(top_m, scores.shape[1])
    if m <= 0:
        return None
    top = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < scores.shape[1] else \
        np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    s = np.take_along_axis(scores, top, axis=1)
    ok = s >= floor
    i = np.broadcast_to(row_ids[:, None], top.shape)[ok]
    j = col_ids[top[ok]]
    keep = i != j
    i, j, s = i[keep], j[keep], s[ok][keep]
    return np.minimum(i, j), np.maximum(i, j), s


def _unique_pairs(pairs: Pairs, n: int) -> Pairs:
    key = pairs.i * n + pairs.j
    _, first = np.unique(key, return_index=True)
    return pairs.select(np.sort(first))


def _exact_pairs(x: np.ndarray, threshold: float, top_m: int = 0, floor: float = 1.0) -> Pairs:
    n = len(x)
    block = int(max(16, min(1024, SCORE_BYTES // (4 * max(n, 1)))))  # small: closer to n^2/2 products
    parts, count = [], 0
    for rows in iter_blocks(n, block):
        start = 0 if top_m else rows.start  # top-m needs whole rows, the range part the upper triangle
        scores = x[rows] @ x[start:].T
        if top_m:
            r = np.arange(rows.stop - rows.start)
            scores[r, r + rows.start - start] = -np.inf  # not its own neighbour
        r, c = np.nonzero(scores >= threshold)
        i, j = r + rows.start, c + start
        keep = j > i
        parts.append((i[keep], j[keep], scores[r[keep], c[keep]]))
        count += int(keep.sum())
        _check_count(count, threshold)
        top = _top_pairs(np.arange(rows.start, rows.stop), np.arange(start, n), scores, top_m, floor) \
            if top_m else None
        if top is not None:
            parts.append(top)
    pairs = _collect(parts)
    return _unique_pairs(pairs, n) if top_m else pairs


def _cell_pairs(x: np.ndarray, threshold: float, top_m: int = 0, floor: float = 1.0, seed: int = 0) -> Pairs:
    """Approximate range search for large n: exact BLAS products within k-means cells.

    Spherical k-means (nlist = sqrt(CELL_PROBE * n) cells, trained on a sample) puts every
    vector in its nearest cell and lists it in its CELL_PROBE nearest cells; each cell's
    own vectors are compared exactly (one matrix product) with every vector listed there.
    A pair (i, j) is found when i's cell is among j's CELL_PROBE nearest or vice versa;
    near-duplicates (cosine >= 0.9) nearly always share cells. Cost ~ n * d * (nlist +
    CELL_PROBE * n / nlist) * 2 flops, all in BLAS: ~1/20 of an exact all-pairs search at
    n = 100k, and ~4x less than the IVF-Flat range search it replaces (whose list scans are
    not BLAS). Similarities are exact inner products.
    """
    faiss = load_faiss()
    n, d = x.shape
    nlist = int(max(1, min(np.sqrt(CELL_PROBE * n), n // CELL_MIN_SIZE)))  # cells big enough for BLAS
    probe = min(CELL_PROBE, nlist)
    rng = np.random.default_rng(seed)
    train = x[rng.choice(n, size=min(n, CELL_TRAIN_PER_LIST * nlist), replace=False)]
    km = faiss.Kmeans(d, nlist, niter=CELL_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=CELL_TRAIN_PER_LIST, min_points_per_centroid=1)
    km.train(train)
    cells = np.empty((n, probe), dtype=np.int64)
    for rows in iter_blocks(n, 16384):
        _, cells[rows] = km.index.search(x[rows], probe)
    primary = cells[:, 0]
    by_primary = np.argsort(primary, kind="stable")
    p_bounds = np.searchsorted(primary[by_primary], np.arange(nlist + 1))
    listed = np.argsort(cells.ravel(), kind="stable")
    l_bounds = np.searchsorted(cells.ravel()[listed], np.arange(nlist + 1))
    listed //= probe  # row of each listing
    parts, count = [], 0
    for c in range(nlist):
        own = by_primary[p_bounds[c]:p_bounds[c + 1]]
        cols = listed[l_bounds[c]:l_bounds[c + 1]]
        if len(own) == 0 or len(cols) < 2:
            continue
        xc = x[cols]
        step = int(max(16, SCORE_BYTES // (4 * len(cols))))
        for sub in iter_blocks(len(own), step):
            rows = own[sub]
            scores = x[rows] @ xc.T
            r, k = np.nonzero(scores >= threshold)
            i, j = rows[r], cols[k]
            keep = i != j
            parts.append((np.minimum(i, j)[keep], np.maximum(i, j)[keep], scores[r[keep], k[keep]]))
            count += int(keep.sum())
            _check_count(count // 2, threshold)
            if top_m:
                scores[rows[:, None] == cols[None, :]] = -np.inf
                top = _top_pairs(rows, cols, scores, top_m, floor)
                if top is not None:
                    parts.append(top)
    return _unique_pairs(_collect(parts), n)  # a pair can be found from both ends


def candidate_pairs(vectors: np.ndarray, threshold: float, *, exact: bool | None = None,
                    top_m: int = 0, floor: float | None = None) -> Pairs:
    """All pairs i < j with cosine >= threshold (exact up to AUTO_EXACT_MAX vectors by default).

    With `top_m` > 0, also every pair where one work is among the other's `top_m` nearest
    neighbours with cosine >= `floor` (the verified mode's candidate rule, see DUPLICATE_TOP_M).
    """
    x = as_unit_matrix(vectors)
    threshold = check_threshold(threshold)
    if top_m < 0:
        raise UsageError(f"--top-m must be >= 0, got {top_m}")
    floor = threshold if floor is None else min(check_threshold(floor, "--floor"), threshold)
    exact = len(x) <= AUTO_EXACT_MAX if exact is None else exact
    return _exact_pairs(x, threshold, top_m, floor) if exact else _cell_pairs(x, threshold, top_m, floor)


def keeper_order(items: pd.DataFrame) -> np.ndarray:
    """Rank of each item as a keeper (0 = best): resolution, then file size, then path."""
    pixels = items["width"].to_numpy(dtype=np.int64) * items["height"].to_numpy(dtype=np.int64)
    size = items["size"].to_numpy(dtype=np.int64) if "size" in items else np.zeros(len(items), np.int64)
    order = np.lexsort((items["path"].to_numpy(dtype=str), -size, -pixels))
    rank = np.empty(len(items), dtype=np.int64)
    rank[order] = np.arange(len(items))
    return rank


def clique_groups(pairs: Pairs, n: int) -> list[list[int]]:
    """Greedy non-chaining grouping (see module docstring); each group lists item rows."""
    adj: list[dict[int, float]] = [{} for _ in range(n)]
    for a, b, s in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.sim.tolist(), strict=True):
        adj[a][b] = s
        adj[b][a] = s
    degree = np.array([len(a) for a in adj])
    assigned = np.zeros(n, dtype=bool)
    groups = []
    for centre in np.lexsort((np.arange(n), -degree)):
        if degree[centre] == 0:
            break
        if assigned[centre]:
            continue
        members = [int(centre)]
        for cand, _ in sorted(adj[centre].items(), key=lambda kv: (-kv[1], kv[0])):
            if not assigned[cand] and all(cand in adj[m] for m in members[1:]):
                members.append(cand)
        if len(members) > 1:
            assigned[members] = True
            groups.append(members)
    return groups


def _group_docs(store: Store, pairs: Pairs, groups: list[list[int]]) -> list[dict]:
    items = store.items
    rank = keeper_order(items)
    paths = items["path"].to_numpy()
    lookup = {(a, b): p for p, (a, b) in enumerate(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))}
    vectors = store.vectors
    docs = []
    for members in groups:
        keep = min(members, key=lambda m: rank[m])
        dups = []
        for m in sorted((m for m in members if m != keep), key=lambda m: rank[m]):
            p = lookup.get((min(keep, m), max(keep, m)))
            sim = float(pairs.sim[p]) if p is not None else float(vectors[keep] @ vectors[m])
            dup = {"path": str(paths[m]), "similarity": round(sim, 6)}
            if pairs.inliers is not None and p is not None:
                dup["inliers"] = int(pairs.inliers[p])
            dups.append(dup)
        dups.sort(key=lambda d: -d["similarity"])
        docs.append({"keep": str(paths[keep]), "duplicates": dups, "_rows": [keep, *sorted(set(members) - {keep})]})
    return docs


def _leak_groups(store: Store, pairs: Pairs, groups: list[list[int]], column: str) -> list[list[int]]:
    """Groups with members on different sides of `column`, plus any cross pair split by grouping."""
    if column not in store.label_columns:
        raise UsageError(f"--across {column}: no such label column (labels: {', '.join(store.label_columns) or 'none'})")
    side = store.items[column].astype(str).to_numpy()
    leaks = [g for g in groups if len(set(side[g])) > 1]
    group_of = {m: gi for gi, g in enumerate(groups) for m in g}
    for a, b in zip(pairs.i.tolist(), pairs.j.tolist(), strict=True):
        if side[a] != side[b] and (group_of.get(a, -1) != group_of.get(b, -2)):
            leaks.append([a, b])
    return leaks


def find_duplicates(
    store: Store,
    threshold: float | None = None,
    *,
    verify: bool = VERIFY_DUPLICATES,
    min_inliers: int = MIN_INLIERS,
    across: str | None = None,
    workers: int | None = None,
    exact: bool | None = None,
    top_m: int | None = None,
    floor: float | None = None,
) -> dict:
    """`artenc dedup` as a function; returns the JSON document (groups, keepers, duplicates)."""
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    if min_inliers < 4:
        raise UsageError(f"--min-inliers must be >= 4 (a homography needs 4 points), got {min_inliers}")
    if threshold is None:
        threshold = duplicate_threshold(verify)
    threshold = check_threshold(threshold)
    if across is not None and across not in store.label_columns:
        raise UsageError(f"--across {across}: no such label column (labels: {', '.join(store.label_columns) or 'none'})")
    if top_m is None:
        top_m = DUPLICATE_TOP_M if verify else 0
    if floor is None:
        floor = DUPLICATE_FLOOR
    pairs = candidate_pairs(store.vectors, threshold, exact=exact, top_m=top_m, floor=floor)
    n_candidates = len(pairs)
    log.info("%d candidate pairs (cosine >= %.3f, or among the %d nearest with cosine >= %.3f)",
             n_candidates, threshold, top_m, min(floor, threshold))
    if verify and len(pairs):
        from artenc.verify import verify_pairs

        pairs.inliers = verify_pairs(store, pairs.i, pairs.j, workers=workers)
        pairs = pairs.select(pairs.inliers >= min_inliers)
        log.info("%d of %d candidate pairs verified (>= %d inliers)", len(pairs), n_candidates, min_inliers)
    groups = clique_groups(pairs, len(store))
    if across is not None:
        groups = _leak_groups(store, pairs, groups, across)
    docs = _group_docs(store, pairs, groups)
    if across is not None:
        side = store.items[across].astype(str).to_numpy()
        for d in docs:
            d["sides"] = sorted(set(side[d["_rows"]]))
    return {
        "threshold": threshold,
        "top_m": top_m,
        "floor": min(floor, threshold) if top_m else None,
        "verified": bool(verify),
        "min_inliers": min_inliers if verify else None,
        "across": across,
        "count": len(store),
        "candidate_pairs": n_candidates,
        "duplicate_pairs": len(pairs),
        "groups": docs,
    }


def public(doc: dict) -> dict:
    """The document without private bookkeeping (`_rows`), for JSON output."""
    return {**doc, "groups": [{k: v for k, v in g.items() if not k.startswith("_")} for g in doc["groups"]]}


def groups_table(doc: dict) -> pd.DataFrame:
    """One row per member: group, role (keep/duplicate), path, similarity to the keeper, inliers."""
    import pandas as pd

    rows = []
    for g, group in enumerate(doc["groups"]):
        rows.append({"group": g, "role": "keep", "path": group["keep"], "similarity": 1.0, "inliers": None})
        for d in group["duplicates"]:
            rows.append({"group": g, "role": "duplicate", "path": d["path"], "similarity": d["similarity"],
                         "inliers": d.get("inliers")})
    return pd.DataFrame(rows, columns=["group", "role", "path", "similarity", "inliers"])


def copy_unique(store: Store, doc: dict, out_dir: str | os.PathLike) -> int:
    """Copy every work except the listed duplicates to `out_dir` (by relpath); originals untouched."""
    out = Path(out_dir).resolve()
    dropped = {d["path"] for g in doc["groups"] for d in g["duplicates"]}
    items = store.items
    copied, seen = 0, set()
    for path, rel, sha in zip(items["path"], items["relpath"], items["sha256"], strict=True):
        if path in dropped:
            continue
        dst = out / rel
        if dst in seen:  # two roots with the same relative path
            dst = dst.with_name(f"{dst.stem}-{sha[:8]}{dst.suffix}")
        seen.add(dst)
        if dst.exists() and os.path.samefile(dst, path):
            raise UsageError(f"--copy-unique-to {out_dir}: would overwrite the original {path}; choose another folder")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst)
        copied += 1
    return copied
