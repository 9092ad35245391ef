"""Range pairs at millions of works: k-means cells joined exactly, with a provable listing rule.

Near-duplicate search (`artenc.dedup`) needs every pair i < j whose cosine similarity reaches a
threshold t. An exact all-pairs search costs n^2 dot products; this module cuts it to
pairs that share a k-means cell, the way SemDeDup does (Abbas et al. 2023, "SemDeDup:
Data-efficient learning at web-scale through semantic deduplication": k-means, then exact
pairwise similarities within each cluster), without SemDeDup's blind spot, pairs split by a
cell boundary:

1. Spherical k-means (FAISS ``Kmeans``, nlist ~ sqrt(n) unit centroids) on a sample.
2. Every vector x goes to its nearest cell A (largest c.x), and is also *listed* in every other
   cell B whose bisecting hyperplane with A is within reach of a partner:
   ``(c_A.x - c_B.x) / |c_A - c_B| <= delta``, ``delta = sqrt(2 (1 - t))`` (the largest
   distance between unit vectors with cosine >= t).
3. Each cell compares its own vectors with its own and its listed vectors (BLAS products,
   exact float32 cosines from the store).

Why no pair is missed: let x (cell A) and y (cell B != A) have x.y >= t, so |x - y| <= delta.
Since y prefers B, (c_A - c_B).y <= 0, hence (c_A - c_B).x <= (c_A - c_B).(x - y) <=
|c_A - c_B| delta: x is listed in B, where y is an own vector. The rule only lists a vector
near a boundary, so on clustered data most vectors are in one cell. A vector the rule would
list in more than `max_listed` cells is listed in the `max_listed` nearest boundaries only and
counted (`CellAssignment.capped`): only pairs involving such vectors can be missed (low thresholds
on diffuse data; logged).

Cost: n x nlist x dim (assignment) + sum over cells of own x (own + listed) x dim multiply-adds,
all in BLAS; memory: one block of scores, one cell's vectors and the cell assignment
(~12 bytes per listing). The vectors are read from a `Store` (`vector_blocks` once, then
`vectors_at` per cell) or an in-memory `artenc.search.ArrayRows`, never held whole.

Why our own code: FAISS range search over IVF lists scans codes outside BLAS with a fixed
nprobe (no guarantee), and PQ-estimated similarities are biased by the quantisation error
(~0.1-0.2 at dim/16 bytes), so they cannot decide a 0.9 threshold; libraries for all-pairs
similarity joins (e.g. pysparnn, ann-benchmarks' range mode) do not take a store's blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from artenc.index import load_faiss
from artenc.progress import Progress
from artenc.search import (
    SCORE_BYTES,
    Pairs,
    block_range_pairs,
    block_top_m_pairs,
    check_pair_count,
    check_threshold,
    check_top_m,
    iter_blocks,
)

log = logging.getLogger(__name__)

CELL_MIN_SIZE = 256  # vectors per cell at least (BLAS products of useful size)
CELL_TRAIN_PER_LIST = 32  # k-means training points per cell
CELL_ITERATIONS = 8  # k-means iterations
CELL_MAX_LISTED = 8  # cells a vector is listed in beyond its own, at most (see the module docstring)
ASSIGN_BLOCK = 2048  # vectors assigned at once: (block, nlist) float32 scores, ~18 MB at nlist 2236
TRIANGLE_BLOCK = 512  # own rows per product: the own x own triangle costs ~own^2 / 2 (+ blocks)
BOUNDARY_SLACK = 1e-4  # float32 rounding of the scores in the listing rule


@dataclass
class CellAssignment:
    """Which cell each vector is in and where else it is listed.

    Attributes:
        nlist: number of cells.
        own: (n,) int32 cell of each vector (its nearest centroid).
        listed_rows, listed_cells: (e,) int64 / int32: vector listed_rows[k] is also listed
            in cell listed_cells[k] (never its own).
        capped: vectors the rule would have listed in more than `max_listed` cells.
    """

    nlist: int
    own: np.ndarray
    listed_rows: np.ndarray
    listed_cells: np.ndarray
    capped: int


def cell_count(n: int) -> int:
    """nlist for n vectors: ~sqrt(n), with at least CELL_MIN_SIZE vectors per cell."""
    return int(max(1, min(round(np.sqrt(n)), n // CELL_MIN_SIZE)))


def boundary_reach(threshold: float) -> float:
    """delta = sqrt(2 (1 - t)): the largest Euclidean distance between unit vectors whose
    cosine similarity is at least t (t in [-1, 1])."""
    return float(np.sqrt(max(0.0, 2.0 * (1.0 - threshold))))


def train_cells(source, nlist: int, *, seed: int = 0) -> np.ndarray:
    """(nlist, dim) float32 unit centroids: FAISS spherical k-means on a sample of
    CELL_TRAIN_PER_LIST * nlist rows of `source` (a `Store` or `ArrayRows`)."""
    faiss = load_faiss()
    n, d = len(source), int(source.dim)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, CELL_TRAIN_PER_LIST * nlist), replace=False))
    km = faiss.Kmeans(d, nlist, niter=CELL_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=CELL_TRAIN_PER_LIST, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(source.vectors_at(rows), dtype=np.float32))
    c = np.asarray(km.centroids, dtype=np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def assign_cells(source, centroids: np.ndarray, threshold: float, *, max_listed: int = CELL_MAX_LISTED,
                 progress: bool = True) -> CellAssignment:
    """Each vector's own cell and the other cells the boundary rule lists it in (module docstring).

    Args:
        source: a `Store` or `ArrayRows` (n unit vectors, read block by block).
        centroids: (nlist, dim) float32 unit vectors (`train_cells`).
        threshold: the cosine similarity of the pairs to be found, in [-1, 1].
        max_listed: cells a vector is listed in beyond its own, at most (>= 0).

    Returns:
        `CellAssignment`.
    """
    threshold = check_threshold(threshold)
    n, nlist = len(source), len(centroids)
    reach = boundary_reach(threshold) + BOUNDARY_SLACK
    gap = np.sqrt(np.maximum(1e-12, 2.0 - 2.0 * (centroids @ centroids.T))).astype(np.float32)  # |c_A - c_B|
    own = np.empty(n, dtype=np.int32)
    rows_parts, cells_parts, capped = [], [], 0
    bar = Progress(n, "dedup: cells", unit="vec", enabled=progress)
    for offset, block in source.vector_blocks(block_rows=ASSIGN_BLOCK):
        s = block @ centroids.T  # (b, nlist)
        a = s.argmax(axis=1)
        r = np.arange(len(block))
        own[offset:offset + len(block)] = a
        dist = (s[r, a][:, None] - s) / gap[a]  # distance of x to the bisector of its cell and each other
        dist[r, a] = np.inf  # a vector is never "listed" in its own cell
        hit = dist <= reach
        count = hit.sum(axis=1)
        over = np.flatnonzero(count > max_listed)
        if len(over):
            capped += len(over)
            keep = np.argpartition(dist[over], max_listed, axis=1)[:, :max_listed] if max_listed else \
                np.zeros((len(over), 0), dtype=np.int64)
            hit[over] = False
            hit[over[:, None], keep] = True
        ri, ci = np.nonzero(hit)
        rows_parts.append(ri.astype(np.int64) + offset)
        cells_parts.append(ci.astype(np.int32))
        bar.update(len(block))
    bar.close()
    listed_rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, np.int64)
    listed_cells = np.concatenate(cells_parts) if cells_parts else np.zeros(0, np.int32)
    return CellAssignment(nlist, own, listed_rows, listed_cells, capped)


def _members(cells: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, bounds): rows of cell c are order[bounds[c]:bounds[c + 1]], ascending."""
    order = np.argsort(cells, kind="stable")
    return order, np.searchsorted(cells[order], np.arange(nlist + 1))


def cell_pairs(source, threshold: float, *, top_m: int = 0, floor: float | None = None, seed: int = 0,
               max_pairs: int | None = None, max_listed: int = CELL_MAX_LISTED, nlist: int | None = None,
               progress: bool = True) -> Pairs:
    """Every pair i < j of `source` with cosine >= `threshold`, through k-means cells (module
    docstring: none is missed unless `CellAssignment.capped` vectors are involved, which is logged).

    Args:
        source: a `Store` (read in blocks, never whole) or `artenc.search.ArrayRows`.
        threshold: cosine similarity in [-1, 1].
        top_m: also each row's `top_m` most similar rows with cosine >= `floor` among the
            vectors its cell compares it with (approximate: a neighbour in another cell can be
            missed); 0: off.
        floor: cosine similarity of the top-m pairs (default `threshold`).
        seed: the k-means sample and initialisation.
        max_pairs: refuse (ParameterError("threshold")) beyond this many range pairs.
        max_listed: cells a vector is listed in beyond its own, at most.
        nlist: number of cells (default `cell_count(n)`).
        progress: a bar on a terminal, log lines elsewhere.

    Returns:
        `artenc.search.Pairs` (int64 i < j, each pair once, float32 exact cosines), sorted by (i, j).

    Raises:
        ParameterError: bad threshold, floor or top_m; too many pairs.
    """
    threshold = check_threshold(threshold)
    top_m = check_top_m(top_m)
    floor = threshold if floor is None else check_threshold(floor, "floor")
    n = len(source)
    if n < 2:
        return Pairs.concat([])
    nlist = cell_count(n) if nlist is None else int(max(1, min(nlist, n)))
    centroids = train_cells(source, nlist, seed=seed)
    cells = assign_cells(source, centroids, threshold, max_listed=max_listed, progress=progress)
    if cells.capped:
        log.info("%d of %d vectors lie near more than %d cell boundaries within reach of a pair at "
                 "cosine %.3f; they are listed in the %d nearest only, so a pair involving them can be "
                 "missed (exact=True searches every pair)", cells.capped, n, max_listed, threshold, max_listed)
    own_order, own_bounds = _members(cells.own, nlist)
    ext_order, ext_bounds = _members(cells.listed_cells, nlist)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    count = 0

    def add(part: tuple[np.ndarray, np.ndarray, np.ndarray], ranged: bool = True) -> None:
        nonlocal count
        parts.append(part)
        if ranged:
            count += len(part[0])
            check_pair_count(count // 2, threshold, max_pairs)  # a pair can be found from both ends

    bar = Progress(nlist, "dedup: pairs", unit="cell", enabled=progress)
    for c in range(nlist):
        own = own_order[own_bounds[c]:own_bounds[c + 1]]  # ascending rows (stable sort of row order)
        ext = np.sort(cells.listed_rows[ext_order[ext_bounds[c]:ext_bounds[c + 1]]])
        bar.update(1)
        if len(own) == 0 or len(own) + len(ext) < 2:
            continue
        x_own = source.vectors_at(own)
        x_ext = source.vectors_at(ext) if len(ext) else np.zeros((0, x_own.shape[1]), np.float32)
        cols = np.concatenate([own, ext])
        x_cols = np.concatenate([x_own, x_ext]) if len(ext) else x_own
        step = int(max(16, min(TRIANGLE_BLOCK, SCORE_BYTES // (4 * len(cols)))))  # small: closer to own^2 / 2
        for sub in iter_blocks(len(own), step):
            rows = own[sub]
            if top_m:  # whole rows: the top-m rule needs every column
                scores = x_own[sub] @ x_cols.T
                add(block_range_pairs(scores, rows, cols, threshold, upper=False))
                scores[np.arange(len(rows)), np.arange(sub.start, sub.stop)] = -np.inf  # not its own neighbour
                top = block_top_m_pairs(scores, rows, cols, top_m, floor)
                if top is not None:
                    add(top, ranged=False)
            else:  # own x own upper triangle, own x listed whole
                add(block_range_pairs(x_own[sub] @ x_own[sub.start:].T, rows, own[sub.start:], threshold, upper=True))
                if len(ext):
                    add(block_range_pairs(x_own[sub] @ x_ext.T, rows, ext, threshold, upper=False))
    bar.close()
    pairs = Pairs.concat(parts).unique(n)  # a pair across cells is found from both ends
    return pairs.select(np.lexsort((pairs.j, pairs.i)))
