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
3. Each cell compares its own vectors with its own and its listed vectors (BLAS products) on
   8-bit scalar-quantised copies held in memory (FAISS ``ScalarQuantizer`` QT_8bit, dim bytes
   per vector, made in the same sequential pass as step 2); a pair is a candidate when its
   approximate cosine reaches the threshold minus a rigorous bound of the quantisation error
   (`error_margin`), and every candidate is re-scored exactly from the source.

Why no pair is missed: let x (cell A) and y (cell B != A) have x.y >= t, so |x - y| <= delta.
Since y prefers B, (c_A - c_B).y <= 0, hence (c_A - c_B).x <= (c_A - c_B).(x - y) <=
|c_A - c_B| delta: x is listed in B, where y is an own vector. The rule only lists a vector
near a boundary, so on clustered data most vectors are in one cell. A vector the rule would
list in more than `max_listed` cells is listed in the `max_listed` nearest boundaries only and
counted (`CellAssignment.capped`): only pairs involving such vectors can be missed (low thresholds
on diffuse data; a warning says how many).

Cost: one sequential read of the vectors (assignment and codes; random reads of stored rows
cost ~0.1 ms each on disk, so the join never reads rows one by one), n x nlist x dim
(assignment) + sum over cells of own x (own + listed) x dim multiply-adds, all in BLAS, and
the exact re-scoring of the candidates. Memory: n x dim bytes of codes (5M x 1280: 6.4 GB, a
quarter of float32), ~12 bytes per listing, one cell's decoded vectors and one block of scores.
The source is a `Store` (`vector_blocks`, then `vectors_at` for the candidates only) or an
in-memory `artenc.search.ArrayRows`.

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
    block_top_m_pairs,
    cap_cosine,
    check_pair_count,
    check_threshold,
    check_top_m,
    iter_blocks,
    similarity_at_least,
)

log = logging.getLogger(__name__)

CELL_MIN_SIZE = 256  # vectors per cell at least (BLAS products of useful size)
CELL_TRAIN_PER_LIST = 32  # k-means training points per cell
CELL_ITERATIONS = 8  # k-means iterations
CELL_MAX_LISTED = 32  # cells a vector is listed in beyond its own, at most (module docstring; a dense group of
# near-copies needs as many as k-means puts centroids inside it: 3,000 copies among 60k works needed ~12)
ASSIGN_BLOCK = 2048  # vectors assigned at once: (block, nlist) float32 scores, ~18 MB at nlist 2236
TRIANGLE_BLOCK = 512  # own rows per product: the own x own triangle costs ~own^2 / 2 (+ blocks)
BOUNDARY_SLACK = 1e-4  # float32 rounding of the scores in the listing rule and the error margin
QUANTIZER_TRAIN = 20_000  # rows the 8-bit scalar quantiser's per-dimension ranges are trained on
VERIFY_PAIRS = 16_384  # candidate pairs re-scored exactly at a time (<= 2 x 16k rows read together)


@dataclass
class CellAssignment:
    """Which cell each vector is in and where else it is listed.

    Attributes:
        nlist: number of cells.
        own: (n,) int32 cell of each vector (its nearest centroid).
        listed_rows, listed_cells: (e,) int64 / int32: vector listed_rows[k] is also listed
            in cell listed_cells[k] (never its own).
        capped: vectors the rule would have listed in more than `max_listed` cells.
        codes: (n, dim) uint8 8-bit scalar-quantised vectors (`quantizer`), or None.
        error: (n,) float32 Euclidean norm of each vector's quantisation error, or None.
        quantizer: the FAISS ``ScalarQuantizer`` that decodes `codes`, or None.
    """

    nlist: int
    own: np.ndarray
    listed_rows: np.ndarray
    listed_cells: np.ndarray
    capped: int
    codes: np.ndarray | None = None
    error: np.ndarray | None = None
    quantizer: object | None = None

    def decoded(self, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) approximate vectors of `rows` (from `codes`)."""
        return self.quantizer.decode(np.ascontiguousarray(self.codes[rows]))


def cell_count(n: int) -> int:
    """nlist for n vectors: ~sqrt(n), with at least CELL_MIN_SIZE vectors per cell."""
    return int(max(1, min(round(np.sqrt(n)), n // CELL_MIN_SIZE)))


def boundary_reach(threshold: float) -> float:
    """delta = sqrt(2 (1 - t)): the largest Euclidean distance between unit vectors whose
    cosine similarity is at least t (t in [-1, 1])."""
    return float(np.sqrt(max(0.0, 2.0 * (1.0 - threshold))))


def train_cells(source, nlist: int, *, seed: int = 0):
    """Spherical k-means centroids and an 8-bit scalar quantiser, both trained on one sample of
    max(CELL_TRAIN_PER_LIST * nlist, QUANTIZER_TRAIN) rows of `source` (a `Store` or `ArrayRows`).

    Returns:
        ((nlist, dim) float32 unit centroids, FAISS ``ScalarQuantizer`` QT_8bit).
    Source: FAISS ``Kmeans(spherical=True)``, ``ScalarQuantizer``.
    """
    faiss = load_faiss()
    n, d = len(source), int(source.dim)
    size = min(n, max(CELL_TRAIN_PER_LIST * nlist, QUANTIZER_TRAIN))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    sample = np.ascontiguousarray(source.vectors_at(rows), dtype=np.float32)
    km = faiss.Kmeans(d, nlist, niter=CELL_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=CELL_TRAIN_PER_LIST, min_points_per_centroid=1)
    km.train(sample)
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(sample)
    c = np.asarray(km.centroids, dtype=np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12), sq


def error_margin(row_error: np.ndarray | float, col_error: np.ndarray | float) -> np.ndarray | float:
    """How much the cosine of unit vectors x, y can exceed that of their quantised copies:
    with x = x' + e_x, x.y = x'.y' + x'.e_y + e_x.y <= x'.y' + (1 + |e_x|)|e_y| + |e_x|
    (Cauchy-Schwarz, |x'| <= 1 + |e_x|). Arguments: error norms (float32 arrays broadcast)."""
    return row_error + col_error + row_error * col_error


def assign_cells(source, centroids: np.ndarray, threshold: float, *, quantizer=None,
                 max_listed: int = CELL_MAX_LISTED, progress: bool = True) -> CellAssignment:
    """Each vector's own cell and the other cells the boundary rule lists it in (module
    docstring), and with `quantizer` its 8-bit code and error norm, in one sequential read.

    Args:
        source: a `Store` or `ArrayRows` (n unit vectors, read block by block).
        centroids: (nlist, dim) float32 unit vectors (`train_cells`).
        threshold: the cosine similarity of the pairs to be found, in [-1, 1].
        quantizer: a trained FAISS ``ScalarQuantizer`` (`train_cells`), or None (no codes).
        max_listed: cells a vector is listed in beyond its own, at most (>= 0).

    Returns:
        `CellAssignment`.
    """
    threshold = check_threshold(threshold)
    n, nlist = len(source), len(centroids)
    reach = boundary_reach(threshold) + BOUNDARY_SLACK
    gap = np.sqrt(np.maximum(1e-12, 2.0 - 2.0 * (centroids @ centroids.T))).astype(np.float32)  # |c_A - c_B|
    own = np.empty(n, dtype=np.int32)
    codes = None if quantizer is None else np.empty((n, int(source.dim)), dtype=np.uint8)
    error = None if quantizer is None else np.empty(n, dtype=np.float32)
    rows_parts, cells_parts, capped = [], [], 0
    bar = Progress(n, "dedup: cells", unit="vec", enabled=progress)
    for offset, block in source.vector_blocks(block_rows=ASSIGN_BLOCK):
        if quantizer is not None:
            block_codes = quantizer.compute_codes(np.ascontiguousarray(block, dtype=np.float32))
            codes[offset:offset + len(block)] = block_codes
            error[offset:offset + len(block)] = np.linalg.norm(block - quantizer.decode(block_codes), axis=1)
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
    return CellAssignment(nlist, own, listed_rows, listed_cells, capped, codes, error, quantizer)


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
            missed; the cells then compare exact vectors read row by row); 0: off.
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
    centroids, quantizer = train_cells(source, nlist, seed=seed)
    # the top-m rule ranks neighbours, so its cells are compared on the exact vectors (read per
    # cell: slow on disk, but verified dedup, which asks for it, is bound by SIFT anyway)
    cells = assign_cells(source, centroids, threshold, quantizer=None if top_m else quantizer,
                         max_listed=max_listed, progress=progress)
    error = np.zeros(n, np.float32) if top_m else cells.error
    if cells.capped:
        log.warning("%d of %d vectors lie near more than %d cell boundaries within reach of a pair at "
                 "cosine %.3f; they are listed in the %d nearest only, so a pair involving them can be "
                 "missed (exact=True searches every pair)", cells.capped, n, max_listed, threshold, max_listed)
    own_order, own_bounds = _members(cells.own, nlist)
    ext_order, ext_bounds = _members(cells.listed_cells, nlist)
    ranged: list[tuple[np.ndarray, np.ndarray]] = []
    nearest: list[tuple[np.ndarray, np.ndarray]] = []
    count = 0
    bar = Progress(nlist, "dedup: pairs", unit="cell", enabled=progress)
    for c in range(nlist):
        own = own_order[own_bounds[c]:own_bounds[c + 1]]  # ascending rows (stable sort of row order)
        ext = np.sort(cells.listed_rows[ext_order[ext_bounds[c]:ext_bounds[c + 1]]])
        bar.update(1)
        if len(own) == 0 or len(own) + len(ext) < 2:
            continue
        cols = np.concatenate([own, ext])
        x_cols = source.vectors_at(cols) if top_m else cells.decoded(cols)
        e_cols = error[cols]
        x_own = x_cols[:len(own)]
        step = int(max(16, min(TRIANGLE_BLOCK, SCORE_BYTES // (4 * len(cols)))))  # small: closer to own^2 / 2
        for sub in iter_blocks(len(own), step):
            rows, e_rows, before = own[sub], float(error[own[sub]].max()), len(ranged)
            lowered = threshold - error_margin(e_rows, e_cols) - BOUNDARY_SLACK  # (cols,) candidate thresholds
            if top_m:  # whole rows: the top-m rule needs every column
                scores = x_own[sub] @ x_cols.T
                ranged.append(_candidates(scores, rows, cols, lowered, upper=False))
                scores[np.arange(len(rows)), np.arange(sub.start, sub.stop)] = -np.inf  # not its own neighbour
                top = block_top_m_pairs(scores, rows, cols, top_m, -1.0)
                if top is not None:
                    nearest.append(top[:2])
            else:  # own x own upper triangle, own x listed whole
                ranged.append(_candidates(x_own[sub] @ x_own[sub.start:].T, rows, own[sub.start:],
                                          lowered[sub.start:len(own)], upper=True))
                if len(ext):
                    ranged.append(_candidates(x_own[sub] @ x_cols[len(own):].T, rows, ext, lowered[len(own):],
                                              upper=False))
            # own x own pairs are found once, pairs with a listed work up to twice (once from each end);
            # the top-m mode's whole rows find every pair twice
            count += sum(len(part[0]) for part in ranged[before:]) / 2 if top_m else \
                len(ranged[before][0]) + sum(len(part[0]) for part in ranged[before + 1:]) / 2
            check_pair_count(int(count), threshold, max_pairs)
    bar.close()
    i, j = _unique_pairs(ranged, n)
    sims = exact_similarities(source, i, j)
    keep = similarity_at_least(sims, threshold)
    parts = [(i[keep], j[keep], cap_cosine(sims[keep]))]
    if top_m:  # a top-m pair stays when its exact cosine reaches the floor
        i, j = _unique_pairs(nearest, n)
        sims = exact_similarities(source, i, j)
        keep = similarity_at_least(sims, floor)
        parts.append((i[keep], j[keep], cap_cosine(sims[keep])))
    pairs = Pairs.concat(parts).unique(n)
    return pairs.select(np.lexsort((pairs.j, pairs.i)))


def _candidates(scores: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, col_threshold: np.ndarray,
                *, upper: bool) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) int64 with i < j where scores (r, c) reach each column's threshold (c,); upper:
    only j > i (own x own triangle blocks), else every i != j as (min, max)."""
    r, c = np.nonzero(scores >= col_threshold[None, :])
    i, j = row_ids[r], col_ids[c]
    keep = j > i if upper else i != j
    return np.minimum(i, j)[keep], np.maximum(i, j)[keep]


def _unique_pairs(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs of `parts`, sorted by (i, j)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key = np.unique(np.concatenate([i * n + j for i, j in parts]))
    return key // n, key % n


def exact_similarities(source, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(p,) float32 cosines of row pairs (i, j) of `source` (a `Store` or `ArrayRows`), reading
    the rows of VERIFY_PAIRS pairs at a time (sorted, so a store reads them in file order)."""
    sims = np.empty(len(i), dtype=np.float32)
    for chunk in iter_blocks(len(i), VERIFY_PAIRS):
        rows = np.unique(np.concatenate([i[chunk], j[chunk]]))
        v = source.vectors_at(rows)
        sims[chunk] = np.einsum("nd,nd->n", v[np.searchsorted(rows, i[chunk])], v[np.searchsorted(rows, j[chunk])])
    return sims
