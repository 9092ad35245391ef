"""Range pairs at millions of works: k-means cells joined exactly, with a provable listing rule.

Near-duplicate search (`artenc.dedup`) needs every pair i < j whose cosine similarity reaches a
threshold t. An exact all-pairs search costs n^2 dot products; this module cuts it to
pairs that share a k-means cell, the way SemDeDup does (Abbas et al. 2023, "SemDeDup:
Data-efficient learning at web-scale through semantic deduplication": k-means, then exact
pairwise similarities within each cluster), without SemDeDup's blind spot, pairs split by a
cell boundary:

1. Spherical k-means (FAISS ``Kmeans``, nlist ~ sqrt(n) unit centroids) on a sample, then the
   cells that cost the join most are split in CELL_SPLIT while that lowers the join's cost
   estimated on the sample (`refine_cells`, `join_cost`): a cell holding several natural groups
   has a centroid far from all its members, and the rule of step 2 then lists them in many
   cells (1M bench vectors: 6 listings a work, 18% over CELL_MAX_LISTED; refined: 0.34, none).
2. Every vector x goes to its nearest cell A (largest c.x), and is also *listed* in every other
   cell B whose bisecting hyperplane with A is within reach of a partner:
   ``c_A.x - c_B.x <= |c_A - c_B| delta + slack``, ``delta = sqrt(2 (1 - t))`` (the largest
   distance between unit vectors with cosine >= t; `listing_reach` widens it for stored
   vectors, unit within float16 rounding) and ``slack`` a bound of the float32 rounding of
   the two scores (`score_slack`). The gaps |c_A - c_B| are computed in float64 (`_gaps`).
3. Each cell compares its own vectors with its own and its listed vectors (BLAS products) on
   8-bit scalar-quantised copies held in memory (FAISS ``ScalarQuantizer`` QT_8bit, dim bytes
   per vector, made in the same sequential pass as step 2); a pair is a candidate when its
   approximate cosine reaches the threshold minus a rigorous bound of the quantisation error
   (`error_margin`), and every candidate is re-scored exactly from the source.

Why no pair is missed: let x (cell A) and y (cell B != A) have x.y >= t, so |x - y| <= delta.
Since y prefers B, (c_A - c_B).y <= 0, hence (c_A - c_B).x <= (c_A - c_B).(x - y) <=
|c_A - c_B| delta: x is listed in B, where y is an own vector. The computed scores differ from
these by at most `score_slack` (y's choice of cell and x's score difference), hence the slack;
and the difference is compared with the gap times delta, never divided by the gap, since
centroids that nearly coincide (a dense group of near-copies) have gaps float32 cannot resolve
(a division by a rounded gap of 1e-6 for 1.5e-4 dropped up to half the pairs of such a group).
Nothing here depends on how the centroids were found, so `refine_cells` changes the cost,
never the pairs. The rule only lists a vector near a boundary, so on clustered data most
vectors are in one cell. A vector the rule would list in more than `max_listed` cells is
listed in the `max_listed` nearest boundaries only and counted (`CellAssignment.capped`): only
pairs involving such vectors can be missed (low thresholds on diffuse data; a warning says
how many).

Cost: one sequential read of the vectors (assignment and codes; random reads of stored rows
cost ~0.1 ms each on disk, so the join never reads rows one by one), n x nlist x dim
(assignment) + sum over cells of own x (own + listed) x dim multiply-adds, all in BLAS (small
cells on one thread: threads of small products spin-wait on busy cores), and the exact
re-scoring of the candidates. Memory: n x dim bytes of codes (5M x 1280: 6.4 GB, a quarter of
float32), ~12 bytes per listing, one cell's decoded vectors and one block of scores. The
source is a `Store` (`vector_blocks`, then `vectors_at` for the candidates only) or an
in-memory `artenc.search.ArrayRows`.

Limits of the cost: a group of m vectors spread evenly in many dimensions (the bench's
clusters: a centre plus 1280-d noise, members at cosine ~0.64, 1.9 delta apart at t = 0.9)
costs m^2 x dim whatever the cells: every hyperplane through it leaves its members within
~0.6 / sqrt(dim) of it, so a cut lists all of them on both sides, and no bound decides a pair
without its product. A tree of cells with a constant fan-out (each cell's members re-partitioned
as a sub-problem) cannot start below the groups either: a centroid of 32 near-orthogonal groups
is within delta of every bisector (100k bench vectors, 32 cells: 31 listings a work, i.e. all
pairs). So the cells follow the groups (`refine_cells`), and on data of a fixed number of such
groups the join grows as n^2 / groups.

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
    SIM_TOLERANCE,
    Pairs,
    block_top_m_pairs,
    cap_cosine,
    check_pair_count,
    check_threshold,
    check_top_m,
    iter_blocks,
    limit_threads,
    similarity_at_least,
)

log = logging.getLogger(__name__)

CELL_MIN_SIZE = 256  # vectors per cell at least (BLAS products of useful size)
CELL_TRAIN_PER_LIST = 32  # k-means training points per cell
CELL_ITERATIONS = 8  # k-means iterations
CELL_MAX_LISTED = 32  # cells a vector is listed in beyond its own, at most (module docstring; a dense group of
# near-copies needs as many as k-means puts centroids inside it: 3,000 copies among 60k works needed ~12)
ASSIGN_BLOCK = 2048  # vectors assigned at once: (block, nlist) float32 scores, ~18 MB at nlist 2236
CELL_SAMPLE = 50_000  # rows sampled for refine_cells' cost estimate and splits: at most this, at most n / 8
CELL_SPLIT = 4  # a cell refine_cells splits becomes this many (k-means on its sampled members)
CELL_SPLIT_ROUNDS = 6  # rounds of splits at most
CELL_SPLIT_GAIN = 0.95  # a round of splits is kept when it cuts the estimated cost to this fraction or less
CELL_OVERHEAD = 4096  # the join's cost per cell beyond its products (Python loop, small BLAS calls), in
# dot products: it keeps refine_cells from cutting cells smaller than BLAS likes
SMALL_CELL_WORK = 1 << 27  # multiply-adds (own x (own + listed) x dim) up to which a cell is joined on
# one BLAS thread (~10 ms of one core)
TRIANGLE_BLOCK = 512  # own rows per product: the own x own triangle costs ~own^2 / 2 (+ blocks)
BOUNDARY_SLACK = 1e-4  # float32 rounding of the scores in the error margin of the candidates
NORM_SLACK = 2.0 ** -11  # stored vectors are unit within this relative error (float16's unit roundoff; float32: less)
GAP_BLOCK = 1024  # centroid rows whose gaps are computed at once (float64 (block, nlist) products)
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


def listing_reach(threshold: float) -> float:
    """The reach the listing rule uses: `boundary_reach` for stored vectors, which are unit
    within NORM_SLACK (float16 rounding) and count as a pair from a stored product of
    t - SIM_TOLERANCE (`artenc.search.similarity_at_least`): |x - y|^2 = |x|^2 + |y|^2 - 2 x.y
    <= 2 (1 + NORM_SLACK)^2 - 2 (t - SIM_TOLERANCE)."""
    return float(np.sqrt(max(0.0, 2.0 * (1.0 + NORM_SLACK) ** 2 - 2.0 * (threshold - SIM_TOLERANCE))))


def score_slack(dim: int) -> float:
    """A bound on the float32 rounding of the listing rule's score difference c_A.x - c_B.x:
    two inner products of length `dim` of vectors of norm <= 1 + NORM_SLACK, each within
    gamma_dim = dim * 2^-24 / (1 - dim * 2^-24) of exact (Higham, "Accuracy and Stability of
    Numerical Algorithms", 2002, section 3.1), once for the vector being listed and once for its
    partner's choice of cell: 4 gamma_dim (1 + NORM_SLACK)."""
    u = float(dim) * 2.0 ** -24
    return 4.0 * u / (1.0 - u) * (1.0 + NORM_SLACK)


def sample_rows(source, size: int, *, seed: int = 0) -> np.ndarray:
    """float32 (min(size, n), dim) rows of `source` drawn at random without replacement (read in
    row order)."""
    n = len(source)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))
    return np.ascontiguousarray(source.vectors_at(rows), dtype=np.float32)


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """(k, dim) float32 unit centroids of spherical k-means on x (float32 (m, dim), m >= k),
    CELL_ITERATIONS iterations on at most CELL_TRAIN_PER_LIST points per centroid.
    Source: FAISS ``Kmeans(spherical=True)``."""
    faiss = load_faiss()
    km = faiss.Kmeans(int(x.shape[1]), int(k), niter=CELL_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=CELL_TRAIN_PER_LIST, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    c = np.asarray(km.centroids, dtype=np.float32)
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def train_cells(source, nlist: int, *, seed: int = 0, sample: np.ndarray | None = None):
    """Spherical k-means centroids and an 8-bit scalar quantiser, both trained on one sample of
    max(CELL_TRAIN_PER_LIST * nlist, QUANTIZER_TRAIN) rows of `source` (a `Store` or `ArrayRows`),
    or on `sample` (float32 (m, dim) rows of it, `sample_rows`) when given.

    Returns:
        ((nlist, dim) float32 unit centroids, FAISS ``ScalarQuantizer`` QT_8bit).
    Source: FAISS ``Kmeans(spherical=True)``, ``ScalarQuantizer``.
    """
    faiss = load_faiss()
    if sample is None:
        sample = sample_rows(source, max(CELL_TRAIN_PER_LIST * nlist, QUANTIZER_TRAIN), seed=seed)
    sq = faiss.ScalarQuantizer(int(sample.shape[1]), faiss.ScalarQuantizer.QT_8bit)
    sq.train(sample)
    return spherical_kmeans(sample, nlist, seed=seed), sq


def _nearest(block: np.ndarray, centroids: np.ndarray, gap: np.ndarray, reach: float, slack: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The listing rule (module docstring) for a block of rows: (own (b,) nearest centroid,
    hit (b, nlist) bool: listed in that cell, dist (b, nlist) float32: distance to the bisector of
    its cell and each other beyond the rounding slack, the order in which a capped row keeps its
    listings). A row is listed in B when c_A.x - c_B.x <= |c_A - c_B| reach + slack: the
    difference is compared, not divided by the gap, so cells whose centroids nearly coincide (a
    dense group of near-copies split by `refine_cells`) list every row near both."""
    s = block @ centroids.T  # (b, nlist)
    a = s.argmax(axis=1)
    r = np.arange(len(block))
    margin = s[r, a][:, None] - s  # >= 0
    g = gap[a]
    hit = margin <= g * reach + slack
    hit[r, a] = False  # a vector is never "listed" in its own cell
    dist = np.maximum(margin - slack, 0) / np.maximum(g, np.float32(1e-30))
    return a, hit, dist


def _gaps(centroids: np.ndarray) -> np.ndarray:
    """(nlist, nlist) float32 |c_A - c_B|, computed in float64 from the centroids' own norms
    (|a|^2 + |b|^2 - 2 a.b): the float32 2 - 2 a.b of unit vectors loses gaps below ~1e-3, which
    `refine_cells` makes when it splits a dense group."""
    c = np.asarray(centroids, dtype=np.float64)
    sq = np.einsum("ij,ij->i", c, c)
    out = np.empty((len(c), len(c)), dtype=np.float32)
    for sub in iter_blocks(len(c), GAP_BLOCK):
        out[sub] = np.sqrt(np.maximum(sq[sub, None] + sq[None, :] - 2.0 * (c[sub] @ c.T), 0.0))
    return out


def join_cost(sample: np.ndarray, centroids: np.ndarray, threshold: float, n: int
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """The join's cost for n vectors like `sample` (float32 (s, dim) rows drawn at random), in dot
    products: n x nlist (assignment) + nlist x CELL_OVERHEAD + sum over cells of own x (own +
    listed), each cell's part estimated as (n / s)^2 times its sample counts (listings uncapped).

    Returns:
        (own (s,) int cell of each sample row, (nlist,) float64 cost charged to each cell: own
        pairs plus the cells its own rows are listed in, times those cells' own counts, total).
    """
    nlist, scale = len(centroids), (n / max(1, len(sample))) ** 2
    reach, slack = listing_reach(threshold), score_slack(sample.shape[1])
    gap = _gaps(centroids)
    own = np.empty(len(sample), dtype=np.int64)
    rows_parts, cells_parts = [], []
    for sub in iter_blocks(len(sample), ASSIGN_BLOCK):
        own[sub], hit, _ = _nearest(sample[sub], centroids, gap, reach, slack)
        ri, ci = np.nonzero(hit)
        rows_parts.append(ri + sub.start)
        cells_parts.append(ci)
    rows, cells = np.concatenate(rows_parts), np.concatenate(cells_parts)
    size = np.bincount(own, minlength=nlist).astype(np.float64)
    cost = size * np.maximum(size - 1, 0) + np.bincount(own[rows], weights=size[cells], minlength=nlist)
    return own, cost * scale, float(n * nlist + nlist * CELL_OVERHEAD + cost.sum() * scale)


def _split(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, dim) float32 unit centroids of spherical k-means (Lloyd, CELL_ITERATIONS rounds, seeded
    with k distinct rows) on the few rows x (float32 (m, dim), m >= k) of one cell: NumPy, since
    FAISS's threads cost more than the work at this size."""
    c = x[rng.choice(len(x), size=k, replace=False)].copy()
    for _ in range(CELL_ITERATIONS):
        a = (x @ c.T).argmax(axis=1)
        for j in range(k):
            if np.any(a == j):  # an empty cluster keeps its centroid
                c[j] = x[a == j].sum(axis=0)
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c


def refine_cells(sample: np.ndarray, centroids: np.ndarray, threshold: float, n: int, *, seed: int = 0
                 ) -> np.ndarray:
    """Split the cells that cost the join most while that lowers its estimated cost (`join_cost`).

    k-means with ~sqrt(n) cells often puts several natural groups in one cell (its centroid is
    then far from all its members, so the listing rule lists them in many cells: at 1M bench
    vectors ~6 listings per work and 18% of works over CELL_MAX_LISTED) or cuts one group in
    many. Each round splits every cell whose cost is at least the mean into CELL_SPLIT cells
    (k-means on its sampled members), keeps the splits whose parts cost CELL_SPLIT_GAIN of their
    cell or less (a dense group of near-copies costs the same however it is cut, so its cell
    stays whole), and keeps the round when the estimated cost falls to CELL_SPLIT_GAIN of the
    previous or less. The listing rule holds for any unit centroids, so
    this changes the cost only, never which pairs are found.

    Args:
        sample: float32 (s, dim) unit rows drawn at random from the n vectors (`sample_rows`).
        centroids: (nlist, dim) float32 unit centroids (`train_cells`).
        threshold: the cosine similarity of the pairs to be found.
        n: number of vectors the join will cover.

    Returns:
        (nlist', dim) float32 unit centroids, nlist' >= nlist.
    """
    rng = np.random.default_rng(seed)
    own, cost, total = join_cost(sample, centroids, threshold, n)
    for _ in range(CELL_SPLIT_ROUNDS):
        size = np.bincount(own, minlength=len(centroids))
        heavy = np.flatnonzero((cost >= cost.mean()) & (size >= 2 * CELL_SPLIT))
        if len(heavy) == 0:
            break
        parts = [np.delete(centroids, heavy, axis=0)]
        with limit_threads(1):  # tiny products
            parts += [_split(sample[own == c], CELL_SPLIT, rng) for c in heavy]
        split = np.concatenate(parts)
        split_own, split_cost, split_total = join_cost(sample, split, threshold, n)
        # a split stays only where its parts cost less than the cell did: a dense group of
        # near-copies costs the same however it is cut (every part lists all of it), so its
        # cell stays whole rather than collect centroids (and listings) inside the group
        base = len(centroids) - len(heavy)
        parts_cost = split_cost[base:].reshape(len(heavy), CELL_SPLIT).sum(axis=1)
        pays = parts_cost <= CELL_SPLIT_GAIN * cost[heavy]
        if not pays.any():
            break
        if not pays.all():
            children = split[base:].reshape(len(heavy), CELL_SPLIT, -1)
            split = np.concatenate([split[:base], centroids[heavy[~pays]], children[pays].reshape(-1, split.shape[1])])
            split_own, split_cost, split_total = join_cost(sample, split, threshold, n)
        if split_total > CELL_SPLIT_GAIN * total:
            break
        log.debug("refine_cells: %d -> %d cells, estimated cost %.3g -> %.3g", len(centroids), len(split), total,
                  split_total)
        centroids, own, cost, total = split, split_own, split_cost, split_total
    return centroids


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
    reach, slack = listing_reach(threshold), score_slack(int(source.dim))
    gap = _gaps(centroids)  # |c_A - c_B|
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
        own[offset:offset + len(block)], hit, dist = _nearest(block, centroids, gap, reach, slack)
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
               refine: bool | None = None, progress: bool = True) -> Pairs:
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
        nlist: number of cells k-means starts from (default `cell_count(n)`).
        refine: split cells where that lowers the join's estimated cost (`refine_cells`; the
            pairs found stay the same); default: when `nlist` is not given.
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
    refine = nlist is None if refine is None else bool(refine)
    nlist = cell_count(n) if nlist is None else int(max(1, min(nlist, n)))
    sample = sample_rows(source, max(CELL_TRAIN_PER_LIST * nlist, QUANTIZER_TRAIN,
                                     min(CELL_SAMPLE, n // 8) if refine else 0), seed=seed)
    centroids, quantizer = train_cells(source, nlist, seed=seed, sample=sample)
    if refine:
        centroids = refine_cells(sample, centroids, threshold, n, seed=seed)
        nlist = len(centroids)
    del sample
    # the top-m rule ranks neighbours, so its cells are compared on the exact vectors (read per
    # cell: slow on disk, but verified dedup, which asks for it, is bound by SIFT anyway)
    cells = assign_cells(source, centroids, threshold, quantizer=None if top_m else quantizer,
                         max_listed=max_listed, progress=progress)
    error = np.zeros(n, np.float32) if top_m else cells.error
    if cells.capped:
        log.warning("%d of %d vectors lie near more than %d cell boundaries within reach of a pair at "
                 "cosine %g; they are listed in the %d nearest only, so a pair involving them can be "
                 "missed (exact=True searches every pair)", cells.capped, n, max_listed, threshold, max_listed)
    own_order, own_bounds = _members(cells.own, nlist)
    ext_order, ext_bounds = _members(cells.listed_cells, nlist)
    ranged: list[tuple[np.ndarray, np.ndarray]] = []
    nearest: list[tuple[np.ndarray, np.ndarray]] = []
    count = 0

    def join(c: int) -> None:
        """Cell c's candidate pairs into `ranged` (and `nearest`), counted against max_pairs."""
        nonlocal count
        own = own_order[own_bounds[c]:own_bounds[c + 1]]  # ascending rows (stable sort of row order)
        ext = np.sort(cells.listed_rows[ext_order[ext_bounds[c]:ext_bounds[c + 1]]])
        if len(own) == 0 or len(own) + len(ext) < 2:
            return
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

    # small cells first, on one BLAS thread: threads of small products spin-wait on busy cores
    # (measured at load 5 on 2 cores: 100k bench vectors in 1,489 cells, join 37 s CPU with two, 0.5 s with one)
    own_size = np.diff(own_bounds)
    work = own_size * (own_size + np.diff(ext_bounds)) * int(source.dim)
    order = np.argsort(work, kind="stable")
    small = int(np.searchsorted(work[order], SMALL_CELL_WORK))
    bar = Progress(nlist, "dedup: pairs", unit="cell", enabled=progress)
    with limit_threads(1):
        for c in order[:small]:
            join(int(c))
            bar.update(1)
    for c in order[small:]:
        join(int(c))
        bar.update(1)
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
