"""Clusters of unit vectors: k-medoids (the default), k-means, HDBSCAN and DBSCAN.

`method="kmedoids"` (the default, described first below) is k-medoids on cosine distance
(FasterPAM, `kmedoids` package) with a principled choice of k. The other methods are
described at the end of this docstring ("Other methods").

Distances are d(a, b) = 1 - cos(a, b), float32 matrices computed once and shared by
every k of a sweep (the workshop recomputed an n x n matrix for each of its 48 fits).

Memory bound: at most `sample_size` works are clustered (default `artenc.defaults.CLUSTER_SAMPLE`
= 8,000).
Larger stores are clustered on a uniform random sample of that size; every work is then
assigned to its nearest medoid by an exact blocked top-1 search (`artenc.search`); no n x n matrix.
k-medoids on a store (`cluster_store`) reads only the sample whole (`Store.vectors_at`) and
assigns the store block by block (`Store.vector_blocks`, `assign_blocks`): memory is the
sample, one block and the (n,) labels and distances, whatever the store's size.
A fixed k builds the s x s matrix of the sample (4 * 8000^2 bytes = 256 MB at most).

`k="auto"` sweeps k over a range (default `artenc.defaults.CLUSTER_K_RANGE` = 5:100:2).
Each k is fitted by FasterPAM on the sweep sample, the first SWEEP_MAX = 3,000 clustered works (a random order), starting from
the previous k's medoids plus k-medoids++ additions (warm start), then polished by
alternating (Voronoi) steps on all clustered works with medoid candidates from the sweep
sample (`polish`, an s x 3000 matrix, 96 MB at s = 8,000). Recorded per k, over all
clustered works: inertia (sum of distances to the medoid), distortion (mean distance);
silhouette (exact, on the first SILHOUETTE_MAX = 2,000 works of the sweep sample) and the
gap statistic (Tibshirani et al. 2001: log mean distance of B=3 reference sets of 500
points drawn uniformly in the principal-component box of the data and projected onto the
unit sphere, minus that of the data). Rule: the knee of the inertia curve (kneed, convex,
decreasing) proposes k; among swept k within +-30 % of the knee (at least the knee and its
neighbours) the one with the highest silhouette is chosen. Without a knee, the highest
silhouette wins. The chosen k's sweep solution is the result.

Identical pictures count once (`same_pictures`): works whose vectors are identical (cosine
at least 1.0 by `artenc.search.similarity_at_least`), whose files are byte-identical (equal
sha256) or that a given duplicate report maps to one keeper collapse into one weighted
point (shown by its first store row) before clustering, so no two medoids are the same
picture. FasterPAM has no weights; a weighted point is one row of the dissimilarity matrix
scaled by its weight (the loss is sum_j w_j d(j, medoid(j)), kmedoids reads
diss[point, medoid]), which equals repeating the point w_j times without the larger matrix. Seeding (D^1 sampling) and polishing use the
same weights; the silhouette counts each distinct picture once. Labels are expanded back to
every work. A fixed k above the number of distinct pictures, or k="auto" with fewer than 3
distinct pictures, raises ParameterError("k").

Other methods (scikit-learn), on the same sample of at most `sample_size` works and the same
distinct pictures (`same_pictures`):

- `kmeans`: scikit-learn's `KMeans` (Lloyd, k-means++ seeding; Arthur & Vassilvitskii 2007)
  run plainly on the unit vectors (not spherical k-means: centroids are means, not renormalised;
  for unit vectors the squared Euclidean distance is 2 (1 - cos)). Identical pictures are one
  point with `sample_weight` = its copies (exactly the repeated points). A fixed k takes the best
  of KMEANS_N_INIT seedings; k="auto" fits every k of the sweep once (on all clustered works)
  and records the same curves: inertia (KMeans' own objective, the weighted sum of squared
  Euclidean distances to the centroids), distortion (inertia per work), silhouette (cosine, as
  above) and the gap statistic (the same reference sets, fitted by KMeans); k is chosen by the
  same rule (`choose_k`). The representative ("medoid") of a cluster is its member nearest the
  centroid. Works beyond the sample join their nearest centroid (Euclidean, as KMeans assigns).
- `hdbscan`: scikit-learn's `HDBSCAN` (Campello, Moulavi & Sander 2013) with Euclidean distance
  on the unit vectors (sqrt(2 (1 - cos)), a monotone function of the cosine distance), options
  `min_cluster_size` and `min_samples`. It has no sample weights: each distinct picture counts
  once (so a pile of identical copies is not a dense cluster by itself); labels are expanded
  back to every copy.
- `dbscan`: scikit-learn's `DBSCAN` (Ester et al. 1996) on a sparse neighbourhood graph built by
  `artenc.search.similar_pairs`: two works are neighbours when their cosine similarity is at
  least 1 - `eps` (`eps` is a cosine *distance*, compared by `similarity_at_least`); a core work
  has at least `min_samples` works (itself included, identical copies counted through
  `sample_weight`) within reach. `eps=None` takes the knee of the sorted cosine distances of
  every distinct picture to its `min_samples`-th nearest one (itself first: the k-distance plot
  of Ester et al.): the point farthest below the curve's chord (`knee_eps`).

Both density methods label noise -1 (`Clustering.noise`); k is the number of clusters found (0
is possible). Their representative is the cluster's cosine medoid: the member with the least
total cosine distance to the other members (copies weighted), which for unit vectors is the
member with the highest inner product with the members' sum. Works beyond the sample join the
cluster of the nearest clustered sampled work when close enough, else they are noise: within
`eps` for DBSCAN; for HDBSCAN when their mutual reachability distance to it (the largest of
the distance, its core distance and theirs; a core distance is the distance to the
`min_samples`-th nearest sampled picture) is at most the largest core distance among that
cluster's sampled members, i.e. they would join the hierarchy inside the cluster. For every method other than k-medoids the result holds
the silhouette (cosine) of the non-noise clustered works (at most SILHOUETTE_MAX distinct
pictures), None with fewer than 2 clusters; distances of noise works are NaN.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from artenc.defaults import (
    CLUSTER_K_RANGE,
    CLUSTER_METHOD,
    CLUSTER_MIN_CLUSTER_SIZE,
    CLUSTER_MIN_SAMPLES,
    CLUSTER_SAMPLE,
)
from artenc.errors import ParameterError, UsageError
from artenc.search import (
    ArrayRows,
    as_unit_matrix,
    iter_blocks,
    limit_threads,
    similar_pairs,
    similarity_at_least,
    top_k,
)
from artenc.store import l2_normalize
from artenc.viz.grids import draw_cluster_montage, draw_medoid_strip
from artenc.viz.plots import plot_k_sweep

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger(__name__)

SWEEP_MAX = 3_000
PARALLEL_MIN = 5_000  # FasterPAM on fewer works runs single-threaded (2-3x faster on busy cores)
SILHOUETTE_MAX = 2_000
GAP_REFERENCES = 3
GAP_AXES_SAMPLE = 500
GAP_REFERENCE_SIZE = 500
KNEE_WINDOW = 0.3
MIN_AUTO_WORKS = 3  # k="auto" sweeps k >= 2 and needs a k below the number of distinct pictures
METHODS = ("kmedoids", "kmeans", "hdbscan", "dbscan")
DENSITY_METHODS = ("hdbscan", "dbscan")
KMEANS_N_INIT = 3  # k-means++ seedings tried for a fixed k (the sweep tries one per k)
DBSCAN_MAX_PAIRS = 10_000_000  # neighbour pairs of the DBSCAN graph at most (about 24 bytes each)
ASSIGN_BLOCK = 65_536  # rows per block when measuring distances to the representatives


@dataclass
class KFit:
    """One k-medoids solution: medoids (row indices into the clustered matrix), labels, loss."""

    k: int
    medoids: np.ndarray
    labels: np.ndarray
    loss: float


@dataclass
class Clustering:
    """The final clustering of all n works, plus the sweep when k was chosen automatically.

    Attributes:
        k: clusters; medoids: (k,) int64 item rows of the representatives.
        labels: (n,) int64 cluster of every item, -1 for noise (hdbscan, dbscan).
        distances: (n,) float32 cosine distance (1 - cos) to its cluster's medoid, NaN for noise.
        sweep: one row per swept k (k="auto"); rule: how k (or eps) was chosen.
        sample_size: works clustered (the others were assigned).
        method: one of METHODS; silhouette: cosine silhouette of the non-noise clustered
            works for methods other than kmedoids (None with fewer than 2 clusters);
        params: the method's options as used (eps, min_samples, min_cluster_size).
    """

    k: int
    medoids: np.ndarray  # item rows
    labels: np.ndarray  # (n,) cluster of every item
    distances: np.ndarray  # (n,) cosine distance to its medoid
    sweep: list[dict] = field(default_factory=list)
    rule: str = "given"
    sample_size: int = 0
    method: str = CLUSTER_METHOD
    silhouette: float | None = None
    params: dict = field(default_factory=dict)

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels[self.labels >= 0], minlength=self.k)

    @property
    def noise(self) -> np.ndarray:
        """(m,) int64 item rows labelled noise (-1), in row order."""
        return np.flatnonzero(self.labels < 0)


def parse_k_range(text: str, max_k: int | None = None) -> list[int]:
    """'START:STOP[:STEP]' (STOP exclusive, like range) -> list of k, at most `max_k` (the range
    is cut before it is listed, so a huge STOP costs nothing)."""
    try:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        k_values = range(*parts)
    except ValueError:
        raise ParameterError("k_range", f"must look like START:STOP[:STEP] (e.g. {CLUSTER_K_RANGE}), got {text!r}") from None
    if not k_values or k_values[0] < 1:
        raise ParameterError("k_range", f"{text!r} gives no k >= 1")
    if max_k is not None and k_values.step > 0:
        k_values = range(k_values.start, min(k_values.stop, max_k + 1), k_values.step)
    return list(k_values)


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """(n, n) float32 matrix of 1 - cos, clipped at 0 with an exact zero diagonal."""
    d = x @ x.T
    np.subtract(1.0, d, out=d)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) int64 connected component (0..c-1) of every node of the undirected edges (a, b)."""
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _label_edges(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining each row to the first row with the same label."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.arange(len(labels)), first[inverse.reshape(-1)]


def same_pictures(x: np.ndarray, same: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Collapse rows that are the same picture.

    Args:
        x: (n, dim) float32 unit vectors.
        same: (n,) labels, rows with equal labels are the same picture (e.g. equal sha256,
            a duplicate report's keeper), or None.

    Returns:
        (reps (d,) int64: the first row of each picture, in row order; inverse (n,) int64:
        the picture 0..d-1 of every row). Rows join when their vectors are bitwise equal, have
        cosine at least 1.0 (`artenc.search.similar_pairs`, i.e. `similarity_at_least`, on the
        bitwise-distinct rows: memory bounded) or share a `same` label; joins are transitive.
    """
    n = len(x)
    _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
    a, b = [np.arange(n)], [first[inverse.reshape(-1)]]
    near = similar_pairs(x[first], 1.0)
    a.append(first[near.i])
    b.append(first[near.j])
    if same is not None:
        ea, eb = _label_edges(np.asarray(same))
        a.append(ea)
        b.append(eb)
    comp = _components(n, np.concatenate(a), np.concatenate(b))
    firsts = np.unique(comp, return_index=True)[1]  # comp is 0..c-1: firsts[c] = first row of c
    order = np.argsort(firsts, kind="stable")
    pos = np.empty(len(firsts), dtype=np.int64)
    pos[order] = np.arange(len(firsts))
    return firsts[order].astype(np.int64), pos[comp]


def kmedoids_plusplus(diss: np.ndarray, k: int, rng: np.random.Generator,
                      start: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """k-medoids++ seeding (D^1 sampling: P(j) ~ w_j d(j, nearest medoid)), optionally
    extending existing medoids `start`; `weights` (n,) default 1."""
    n = len(diss)
    medoids = [] if start is None else [int(m) for m in start]
    if not medoids:
        medoids.append(int(rng.integers(n)))
    nearest = diss[medoids].min(axis=0).astype(np.float64)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    while len(medoids) < k:
        mass = nearest * w
        total = mass.sum()
        pick = int(rng.choice(n, p=mass / total)) if total > 0 else int(rng.integers(n))
        if pick in medoids:
            pick = int(np.setdiff1d(np.arange(n), medoids)[0])
        medoids.append(pick)
        np.minimum(nearest, diss[pick], out=nearest)
    return np.asarray(medoids[:k], dtype=np.int64)


def fit_kmedoids(diss: np.ndarray, k: int, *, seed: int = 0, init: np.ndarray | None = None,
                 weights: np.ndarray | None = None) -> KFit:
    """k-medoids++ seeding (extending `init`), alternating (Voronoi) steps, then FasterPAM swaps.

    The alternating steps are a cheap head start for a cold start (skipped when `init`,
    a previous solution, is given); FasterPAM only makes improving swaps, so the result is
    never worse than the solution it starts from.

    Args:
        diss: (n, n) float32 symmetric dissimilarities.
        weights: (n,) positive weights (a point standing for w identical works), or None:
            row j of `diss` is scaled by w_j, so the loss is sum_j w_j d(j, medoid(j)).
    """
    import kmedoids

    n = len(diss)
    if not 1 <= k <= n:
        raise ParameterError("k", f"must be between 1 and the number of works ({n}), got {k}")
    start = kmedoids_plusplus(diss, k, np.random.default_rng(seed), init, weights)
    if weights is not None:
        diss = diss * np.asarray(weights, dtype=diss.dtype)[:, None]  # kmedoids reads diss[point, medoid]
    if init is None or len(init) == 0:
        start = np.asarray(kmedoids.alternating(diss, start.astype(np.uintp), max_iter=100).medoids)
    res = kmedoids.fasterpam(diss, np.asarray(start, dtype=np.uintp), max_iter=100,
                             n_cpu=1 if n <= PARALLEL_MIN else os.cpu_count() or 1)
    return KFit(k, np.asarray(res.medoids, dtype=np.int64), np.asarray(res.labels, dtype=np.int64), float(res.loss))


def cross_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cosine distances of every row of `x` to every row of `y`.

    Args:
        x: (n, dim) float32 unit vectors; y: (m, dim) float32 unit vectors.

    Returns:
        (n, m) float32 matrix of 1 - cos, clipped at 0 (memory 4 n m bytes: callers keep
        m small, e.g. the sweep sample; nearest-only questions go to `assign`).
    """
    d = x @ y.T
    np.subtract(1.0, d, out=d)
    np.maximum(d, 0.0, out=d)
    return d


def polish(cross: np.ndarray, medoids: np.ndarray, max_iter: int = 20, weights: np.ndarray | None = None) -> KFit:
    """Alternating (Voronoi) steps on all works with medoids restricted to the sweep sample.

    `cross` is (n, m): distances from every clustered work to the m sweep-sample works
    (rows 0..m-1 are the sample itself). Each step assigns every work to its nearest medoid,
    then moves each medoid to the sample member of its cluster with the least total distance
    to all members; the loss over all n works never increases. `weights` (n,) weigh the
    works' distances (default 1).
    """
    n, m = cross.shape
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    medoids = np.asarray(medoids, dtype=np.int64).copy()
    for _ in range(max_iter):
        labels = np.argmin(cross[:, medoids], axis=1)
        changed = False
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(medoids) + 1))
        for c in range(len(medoids)):
            members = order[bounds[c]:bounds[c + 1]]
            cand = members[members < m]
            if len(cand) < 2:
                continue
            costs = w[members] @ cross[members][:, cand]
            best = int(np.argmin(costs))
            if costs[best] < w[members] @ cross[members, medoids[c]] - 1e-6:
                medoids[c] = cand[best]
                changed = True
        if not changed:
            break
    near = cross[:, medoids]
    labels = np.argmin(near, axis=1)
    loss = float(w @ near[np.arange(n), labels].astype(np.float64))
    return KFit(len(medoids), medoids, labels.astype(np.int64), loss)


def silhouette(diss: np.ndarray, labels: np.ndarray) -> float:
    """Exact silhouette of the works of `diss` (0 when fewer than 2 clusters are present)."""
    import kmedoids

    if len(np.unique(labels)) < 2:
        return 0.0
    _, inverse = np.unique(labels, return_inverse=True)
    return float(kmedoids.silhouette(diss, inverse.astype(np.int64), n_cpu=1)[0])


def principal_axes(centred: np.ndarray) -> np.ndarray:
    """Orthonormal principal axes (rows) of centred rows, via the small Gram matrix."""
    gram = (centred @ centred.T).astype(np.float64)
    with limit_threads(1):  # a threaded LAPACK eigh on busy cores: 3.7 s instead of 0.02 s
        values, vectors = np.linalg.eigh(gram)
    keep = values > values.max() * 1e-9
    axes = (centred.T.astype(np.float64) @ vectors[:, keep]) / np.sqrt(values[keep])
    return axes.T[::-1].astype(np.float32)


def reference_sets(x: np.ndarray, b: int, size: int, seed: int) -> list[np.ndarray]:
    """Gap-statistic references: uniform in the data's principal-component box, on the sphere."""
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    sample = x[rng.choice(len(x), size=min(len(x), GAP_AXES_SAMPLE), replace=False)] - mean
    axes = principal_axes(sample)
    proj = sample @ axes.T
    lo, hi = proj.min(axis=0), proj.max(axis=0)
    refs = []
    for _ in range(b):
        z = rng.uniform(lo, hi, size=(size, len(lo))).astype(np.float32) @ axes + mean
        refs.append(as_unit_matrix(l2_normalize(z)))
    return refs


def sweep_k(x: np.ndarray, ks: list[int], *, seed: int = 0, gap_refs: int = GAP_REFERENCES,
            weights: np.ndarray | None = None) -> tuple[list[dict], dict[int, KFit], np.ndarray]:
    """Fit every k of `ks` (warm starts) for the unit vectors `x` (in random order).

    Each k is fitted by FasterPAM on the first SWEEP_MAX works (the sweep sample; its
    distance matrix is the only square one), then, when there are more works, polished by
    alternating steps on all of them (`polish`); inertia is always over all of them.
    `weights` (n,): works each row stands for (default 1): inertia and distortion count
    them, the silhouette counts each row once.
    Returns the rows, the fits and the sweep sample's distance matrix.
    """
    n = len(x)
    total = n if weights is None else float(np.sum(weights))
    head_w = None if weights is None else weights[:min(n, SWEEP_MAX)]
    m = min(n, SWEEP_MAX)
    head = cosine_distances(x[:m])
    cross = cross_distances(x, x[:m]) if m < n else None
    s = min(m, SILHOUETTE_MAX)
    sil_diss = head if s == m else np.ascontiguousarray(head[:s, :s])
    refs = [cosine_distances(r) for r in reference_sets(x, gap_refs, min(m, GAP_REFERENCE_SIZE), seed)]
    ref_prev: list[np.ndarray | None] = [None] * len(refs)
    rows, fits, prev = [], {}, None
    for k in sorted(ks):
        fit = fit_kmedoids(head, min(k, m), seed=seed + k, init=prev, weights=head_w)
        prev = fit.medoids
        fit = polish(cross, fit.medoids, weights=weights) if cross is not None else fit
        fits[k] = fit
        ref_logs = []
        for r, ref in enumerate(refs):
            ref_fit = fit_kmedoids(ref, min(k, len(ref)), seed=seed + k, init=ref_prev[r])
            ref_prev[r] = ref_fit.medoids
            ref_logs.append(np.log(max(ref_fit.loss / len(ref), 1e-12)))
        log_w = np.log(max(fit.loss / total, 1e-12))
        rows.append({
            "k": k,
            "inertia": round(fit.loss, 6),
            "distortion": round(fit.loss / total, 6),
            "silhouette": round(silhouette(sil_diss, fit.labels[:s]), 6),
            "gap": round(float(np.mean(ref_logs) - log_w), 6) if refs else None,
            "gap_sd": round(float(np.std(ref_logs) * np.sqrt(1 + 1 / len(refs))), 6) if refs else None,
        })
        log.debug("k=%d inertia %.3f silhouette %.3f", k, fit.loss, rows[-1]["silhouette"])
    return rows, fits, head


def choose_k(rows: list[dict]) -> tuple[int, str]:
    """Knee of the inertia curve, then the best silhouette near it (see module docstring)."""
    ks = [r["k"] for r in rows]
    sil = {r["k"]: r["silhouette"] for r in rows}
    knee = None
    if len(ks) >= 3:
        from kneed import KneeLocator  # imports matplotlib and scipy: about 1 s

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a flat curve has no knee
            knee = KneeLocator(ks, [r["inertia"] for r in rows], curve="convex", direction="decreasing").knee
    if knee is None:
        best = max(ks, key=lambda k: (sil[k], -k))
        return best, "no knee in the inertia curve: highest silhouette"
    pos = ks.index(int(knee))
    window = [k for k in ks if abs(k - knee) <= KNEE_WINDOW * knee] + ks[max(0, pos - 1):pos + 2]
    best = max(set(window), key=lambda k: (sil[k], -k))
    return best, (f"knee of inertia at k={int(knee)} (kneed); highest silhouette within "
                  f"+-{int(KNEE_WINDOW * 100)}% of it: k={best}")


def assign(vectors: np.ndarray, medoid_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest medoid of every vector: the exact top-1 (`artenc.search.top_k`, in blocks).

    Args:
        vectors: (n, dim) float unit vectors; medoid_vectors: (k, dim), k >= 1.

    Returns:
        (labels (n,) int64 index into `medoid_vectors`, ties to the smaller index;
        distances (n,) float32 cosine distance 1 - cos, clipped at 0).

    Raises:
        ParameterError: bad arrays or dims that differ.
    """
    sims, ids = top_k(vectors, medoid_vectors, 1)
    return ids[:, 0], np.maximum(1.0 - sims[:, 0], 0.0)


def assign_blocks(source, medoid_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`assign` streamed: every row of `source` (a `Store` or `artenc.search.ArrayRows`: its
    `vector_blocks`, ASSIGN_BLOCK rows at a time) to its nearest medoid; the same labels and
    distances as `assign` on the whole matrix, memory one block plus (n,) results."""
    n = len(source)
    labels, dist = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float32)
    for offset, block in source.vector_blocks(block_rows=ASSIGN_BLOCK):
        rows = slice(offset, offset + len(block))
        labels[rows], dist[rows] = assign(block, medoid_vectors)
    return labels, dist


def _rows_in_order(source, rows: np.ndarray) -> np.ndarray:
    """(len(rows), dim) float32 unit vectors of `rows` (any order) of `source`, read in row
    order (`vectors_at` on sorted rows) and put back in the order of `rows`."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), source.dim), dtype=np.float32)
    out[order] = as_unit_matrix(source.vectors_at(rows[order]))
    return out


def check_method(method: str, k: int | str = "auto", *, eps: float | None = None, min_samples: int | None = None,
                 min_cluster_size: int | None = None) -> str:
    """The method name, checked with the options that only some methods take.

    Raises:
        ParameterError("method"): not one of METHODS. ParameterError("k"): a fixed k with a
        density method (they find k). ParameterError("eps" / "min_samples" /
        "min_cluster_size"): given to a method that does not use it, or out of range.
    """
    if method not in METHODS:
        raise ParameterError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if method in DENSITY_METHODS and k != "auto":
        raise ParameterError("k", f"is found by {method} itself; leave it at 'auto' (got {k!r})")
    if eps is not None:
        if method != "dbscan":
            raise ParameterError("eps", f"applies to method 'dbscan' only, not {method!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) or not 0 < eps <= 2:
            raise ParameterError("eps", f"must be a cosine distance in (0, 2] (similarity >= 1 - eps), got {eps!r}")
    if min_samples is not None:
        if method not in DENSITY_METHODS:
            raise ParameterError("min_samples", f"applies to methods hdbscan and dbscan only, not {method!r}")
        _check_count(min_samples, "min_samples", 1)
    if min_cluster_size is not None:
        if method != "hdbscan":
            raise ParameterError("min_cluster_size", f"applies to method 'hdbscan' only, not {method!r}")
        _check_count(min_cluster_size, "min_cluster_size", 2)
    return method


def _check_count(value: int, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ParameterError(name, f"must be an integer >= {least}, got {value!r}")
    return int(value)


def _distances_to(x: np.ndarray, medoid_vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) float32 cosine distance (clipped at 0) of every row to its cluster's medoid vector,
    NaN where the label is -1 (noise); blocks of ASSIGN_BLOCK rows (no (n, dim) gather)."""
    out = np.full(len(x), np.nan, dtype=np.float32)
    for rows in iter_blocks(len(x), ASSIGN_BLOCK):
        lab = labels[rows]
        ok = np.flatnonzero(lab >= 0)
        if len(ok):
            dots = np.einsum("nd,nd->n", x[rows][ok], medoid_vectors[lab[ok]])
            out[rows.start + ok] = np.maximum(1.0 - dots, 0.0)
    return out


def central_members(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Per cluster c, the member row i (labels[i] == c) with the highest x_i . centres[c].

    Args:
        x: (n, dim) float32 unit vectors; labels: (n,) int64 in -1..k-1 (-1 is ignored);
        centres: (k, dim) float directions (a KMeans centroid, or the weighted sum of a
            cluster's members: then the result is the cosine medoid, since the total cosine
            distance of i to the members is sum_j w_j - x_i . sum_j w_j x_j).

    Returns:
        (k,) int64 rows, ties to the smaller row. Every cluster must have a member.
    """
    ok = np.flatnonzero(labels >= 0)
    score = np.einsum("nd,nd->n", x[ok], centres[labels[ok]].astype(np.float32))
    order = ok[np.lexsort((ok, -score, labels[ok]))]
    first = np.unique(labels[order], return_index=True)[1]
    return order[first].astype(np.int64)


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..k-1 in increasing order of their values (gaps closed), -1 kept; k."""
    found = np.unique(labels[labels >= 0])
    out = np.full(len(labels), -1, dtype=np.int64)
    ok = labels >= 0
    out[ok] = np.searchsorted(found, labels[ok])
    return out, len(found)


def fit_kmeans(x: np.ndarray, k: int, *, seed: int = 0, weights: np.ndarray | None = None,
               n_init: int = KMEANS_N_INIT):
    """scikit-learn `KMeans` (Lloyd, k-means++ seeding) on unit vectors `x` (n, dim) with
    `sample_weight` = `weights` (n,) or None; the best of `n_init` seedings. Returns the fitted
    estimator (`cluster_centers_` (k, dim), `labels_` (n,), `inertia_`: weighted sum of squared
    Euclidean distances to the centroids)."""
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=n_init, random_state=seed).fit(x, sample_weight=weights)


def sweep_kmeans(x: np.ndarray, ks: list[int], *, seed: int = 0, gap_refs: int = GAP_REFERENCES,
                 weights: np.ndarray | None = None) -> tuple[list[dict], dict]:
    """KMeans for every k of `ks` on the unit vectors `x` (random order), one k-means++
    seeding each, with the sweep's curves: inertia and distortion (KMeans' objective, weighted),
    the cosine silhouette of the first SILHOUETTE_MAX rows (each row once) and the gap statistic
    (the same reference sets as `sweep_k`, fitted by KMeans). Returns the rows and the fits."""
    n = len(x)
    total = n if weights is None else float(np.sum(weights))
    s = min(n, SILHOUETTE_MAX)
    sil_diss = cosine_distances(x[:s])
    refs = reference_sets(x, gap_refs, min(n, SWEEP_MAX, GAP_REFERENCE_SIZE), seed)
    rows, fits = [], {}
    for k in sorted(ks):
        fit = fit_kmeans(x, min(k, n), seed=seed + k, weights=weights, n_init=1)
        fits[k] = fit
        ref_logs = [np.log(max(fit_kmeans(r, min(k, len(r)), seed=seed + k, n_init=1).inertia_ / len(r), 1e-12))
                    for r in refs]
        inertia = float(fit.inertia_)
        rows.append({
            "k": k,
            "inertia": round(inertia, 6),
            "distortion": round(inertia / total, 6),
            "silhouette": round(silhouette(sil_diss, fit.labels_[:s]), 6),
            "gap": round(float(np.mean(ref_logs) - np.log(max(inertia / total, 1e-12))), 6) if refs else None,
            "gap_sd": round(float(np.std(ref_logs) * np.sqrt(1 + 1 / len(refs))), 6) if refs else None,
        })
        log.debug("kmeans k=%d inertia %.3f silhouette %.3f", k, inertia, rows[-1]["silhouette"])
    return rows, fits


def k_distances(x: np.ndarray, min_samples: int) -> np.ndarray:
    """(n,) float32 cosine distance of every row of `x` to its `min_samples`-th nearest row,
    itself counted first (exact, `artenc.search.top_k`): DBSCAN's and HDBSCAN's core distance."""
    sims, _ = top_k(x, x, min_samples)
    return np.maximum(1.0 - sims[:, min_samples - 1], 0.0).astype(np.float32)


def knee_eps(x: np.ndarray, min_samples: int) -> float:
    """DBSCAN's eps from the k-distance plot (Ester et al. 1996): the sorted `k_distances`
    (ascending), both axes scaled to [0, 1], and the point farthest below the chord from the
    first to the last point (the maximum of Kneedle's difference curve, Satopää et al. 2011;
    kneed's own knee search stops at the first local maximum, which a noisy tail can move).

    Returns:
        eps, a cosine distance > 0. Raises ParameterError("eps") when the curve is flat or
        its knee is at distance 0 (nothing to choose from).
    """
    dist = np.sort(k_distances(x, min_samples)).astype(np.float64)
    if len(dist) < 3 or dist[-1] <= dist[0]:
        raise ParameterError("eps", f"cannot be chosen: the distances to the {min_samples}-th nearest work are "
                                    "all equal; give eps (a cosine distance, e.g. 0.1)")
    below = np.linspace(0.0, 1.0, len(dist)) - (dist - dist[0]) / (dist[-1] - dist[0])
    eps = float(dist[int(np.argmax(below))])
    if eps <= 0:
        raise ParameterError("eps", "cannot be chosen: the knee of the k-distance curve is at distance 0 (identical "
                                    "works); give eps (a cosine distance, e.g. 0.1)")
    return eps


def fit_dbscan(x: np.ndarray, eps: float, min_samples: int, weights: np.ndarray | None = None) -> np.ndarray:
    """DBSCAN labels (n,) int64 (-1 noise) of unit vectors `x`: neighbours are the pairs with
    cosine >= 1 - eps (`similar_pairs`, the one comparison rule), read by scikit-learn's DBSCAN
    as a precomputed sparse graph; `weights` (n,) count towards `min_samples`.
    ParameterError("eps") when the graph would exceed DBSCAN_MAX_PAIRS pairs."""
    from scipy.sparse import csr_matrix
    from sklearn.cluster import DBSCAN

    n = len(x)
    try:
        pairs = similar_pairs(x, max(-1.0, 1.0 - eps), max_pairs=DBSCAN_MAX_PAIRS)
    except ParameterError:
        raise ParameterError("eps", f"{eps} is too large: more than {DBSCAN_MAX_PAIRS} pairs of works are "
                                    "that close; lower it") from None
    dist = np.maximum(1.0 - pairs.sim, 0.0)
    graph = csr_matrix((np.concatenate([dist, dist]), (np.concatenate([pairs.i, pairs.j]),
                                                       np.concatenate([pairs.j, pairs.i]))), shape=(n, n))
    # every stored entry is a neighbour: the threshold was applied by similar_pairs (cosine
    # distances are at most 2, so eps=4 keeps them all, explicit zeros included)
    model = DBSCAN(eps=4.0, min_samples=min_samples, metric="precomputed")
    return model.fit(graph, sample_weight=weights).labels_.astype(np.int64)


def fit_hdbscan(x: np.ndarray, min_cluster_size: int, min_samples: int | None) -> np.ndarray:
    """HDBSCAN labels (n,) int64 (-1 noise) of unit vectors `x` (scikit-learn, Euclidean)."""
    from sklearn.cluster import HDBSCAN

    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean", copy=True)
    return model.fit(x).labels_.astype(np.int64)


def cluster_vectors(vectors: np.ndarray, k: int | str = "auto", *, k_range: str | list[int] = CLUSTER_K_RANGE,
                    sample_size: int = CLUSTER_SAMPLE, seed: int = 0, same: np.ndarray | None = None,
                    method: str = CLUSTER_METHOD, eps: float | None = None, min_samples: int | None = None,
                    min_cluster_size: int | None = None) -> Clustering:
    """Clusters of unit vectors by `method`; `k="auto"` sweeps `k_range` and picks k by the
    documented rule (kmedoids, kmeans); hdbscan and dbscan find k themselves.

    Args:
        vectors: (n, dim) float unit vectors; for "kmedoids" also a `Store` (or any source
            with `vector_blocks` / `vectors_at`): then only the sample is read whole and every
            work is assigned block by block (`assign_blocks`), so memory stays bounded.
        k: clusters, or "auto"; k_range: the k swept by "auto" ("START:STOP[:STEP]" or a list).
        sample_size: most works clustered (the rest are assigned, see the module docstring).
        same: (n,) labels, rows with equal labels are the same picture (e.g. sha256), or None.
        method: "kmedoids" (FasterPAM), "kmeans", "hdbscan" or "dbscan" (scikit-learn).
        eps: dbscan only: cosine distance (neighbours have cosine >= 1 - eps), None: the knee
            of the k-distance curve. min_samples: hdbscan/dbscan: works within reach (itself
            included) that make a core work (default CLUSTER_MIN_SAMPLES for dbscan,
            min_cluster_size for hdbscan). min_cluster_size: hdbscan only (default
            CLUSTER_MIN_CLUSTER_SIZE).

    Returns:
        `Clustering` of all n rows; identical pictures (`same_pictures`) are one weighted
        point, so the medoids are distinct pictures. hdbscan/dbscan label noise -1.

    Raises:
        UsageError: no vectors. ParameterError("k"): k not an integer nor "auto", outside
        [1, n], above the number of distinct pictures, "auto" with fewer than
        MIN_AUTO_WORKS distinct pictures, or a fixed k with hdbscan/dbscan;
        ParameterError("k_range"), ("sample_size"), ("method"), ("eps"), ("min_samples"),
        ("min_cluster_size").
    """
    method = check_method(method, k, eps=eps, min_samples=min_samples, min_cluster_size=min_cluster_size)
    streamed = method == CLUSTER_METHOD and hasattr(vectors, "vector_blocks")
    source = vectors if streamed else ArrayRows(vectors)
    x = None if streamed else source.vectors
    n = len(source)
    if n == 0:
        raise UsageError("cannot cluster an empty store (embed some images first)")
    if sample_size < 2:
        raise ParameterError("sample_size", f"must be >= 2, got {sample_size}")
    rng = np.random.default_rng(seed)
    sample = rng.permutation(n)[:sample_size]  # random order: its head is the sweep sample
    xs = x[sample] if x is not None else _rows_in_order(source, sample)
    reps, inverse = same_pictures(xs, None if same is None else np.asarray(same)[sample])
    distinct = len(reps)
    by_row = np.lexsort((sample, inverse))  # each picture is shown by its first store row
    reps = by_row[np.searchsorted(inverse[by_row], np.arange(distinct))]
    weights = None if distinct == len(sample) else np.bincount(inverse).astype(np.float32)
    xd = xs[reps]
    among = (f"{distinct} distinct pictures among the {len(sample)} works"
             + (" sampled" if len(sample) < n else "") + " (identical copies count once)")
    if method in DENSITY_METHODS:
        return _cluster_density(x, sample, reps, inverse, xd, weights, among, method=method, eps=eps,
                                min_samples=min_samples, min_cluster_size=min_cluster_size)
    if k == "auto":
        if distinct < MIN_AUTO_WORKS:
            raise ParameterError("k", f"'auto' needs at least {MIN_AUTO_WORKS} distinct pictures to choose k "
                                      f"from; there are {among}")
        ks = parse_k_range(k_range, max_k=distinct) if isinstance(k_range, str) else list(k_range)
        ks = [kk for kk in ks if 2 <= kk < distinct]
        if not ks:
            raise ParameterError("k_range", f"needs some k in [2, {distinct - 1}] for k='auto' (there are "
                                 f"{among}); {k_range!r} gives none")
        if method == "kmeans":
            rows, kfits = sweep_kmeans(xd, ks, seed=seed, weights=weights)
            chosen, rule = choose_k(rows)
            return _kmeans_result(x, sample, reps, inverse, xd, kfits[chosen], rows, rule)
        rows, fits, _ = sweep_k(xd, ks, seed=seed, weights=weights)
        chosen, rule = choose_k(rows)
        fit = fits[chosen]
    else:
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise ParameterError("k", f"must be an integer or 'auto', got {k!r}") from None
        if not 1 <= k <= n:
            raise ParameterError("k", f"{k} is outside [1, {n}]: the store holds {n} works")
        if k > len(sample):
            raise ParameterError("k", f"{k} exceeds sample_size {len(sample)}; raise sample_size")
        if k > distinct:
            raise ParameterError("k", f"{k} exceeds the number of distinct pictures: there are {among}; "
                                      f"choose k <= {distinct}")
        if method == "kmeans":
            return _kmeans_result(x, sample, reps, inverse, xd, fit_kmeans(xd, k, seed=seed, weights=weights),
                                  [], "given")
        rows, rule = [], "given"
        fit = fit_kmedoids(cosine_distances(xd), k, seed=seed, weights=weights)
    medoids = sample[reps[fit.medoids]]
    medoid_vectors = xd[fit.medoids]
    if len(sample) == n:
        labels = np.empty(n, dtype=np.int64)
        labels[sample] = fit.labels[inverse]
        dist = np.empty(n, dtype=np.float32)
        dist[sample] = np.maximum(1.0 - np.einsum("nd,nd->n", xs, medoid_vectors[fit.labels[inverse]]), 0.0)
    else:
        labels, dist = assign_blocks(source, medoid_vectors)
    dist[medoids] = 0.0
    labels[medoids] = np.arange(len(medoids))
    return Clustering(len(medoids), medoids, labels, dist, rows, rule, len(sample))


def _silhouette_of(xd: np.ndarray, labels_d: np.ndarray) -> float | None:
    """Cosine silhouette of the non-noise distinct pictures (the first SILHOUETTE_MAX), None
    with fewer than 2 clusters among them."""
    ok = np.flatnonzero(labels_d >= 0)[:SILHOUETTE_MAX]
    if len(np.unique(labels_d[ok])) < 2:
        return None
    return round(silhouette(cosine_distances(xd[ok]), labels_d[ok]), 6)


def _finish(x: np.ndarray, sample: np.ndarray, inverse: np.ndarray, reps: np.ndarray, labels_d: np.ndarray,
            medoids_d: np.ndarray, rest_labels, **fields) -> Clustering:
    """The `Clustering` of all n rows from the labels (d,) of the distinct sampled pictures and
    their medoids (k,) (indices into the distinct pictures); `rest_labels(rows)` labels the
    store rows (int64) that were not sampled, called on blocks of ASSIGN_BLOCK rows."""
    n = len(x)
    labels = np.empty(n, dtype=np.int64)
    labels[sample] = labels_d[inverse]
    if len(sample) < n:
        rest = np.ones(n, dtype=bool)
        rest[sample] = False
        rest = np.flatnonzero(rest)
        for block in iter_blocks(len(rest), ASSIGN_BLOCK):
            labels[rest[block]] = rest_labels(rest[block])
    medoids = sample[reps[medoids_d]].astype(np.int64)
    labels[medoids] = np.arange(len(medoids))
    dist = _distances_to(x, x[medoids], labels)
    dist[medoids] = 0.0
    return Clustering(len(medoids), medoids, labels, dist, sample_size=len(sample), **fields)


def _kmeans_result(x, sample, reps, inverse, xd, model, rows: list[dict], rule: str) -> Clustering:
    """`Clustering` of a fitted KMeans: representatives nearest the centroids, the rest of the
    store joins the nearest centroid (Euclidean, as KMeans assigns)."""
    from sklearn.metrics import pairwise_distances_argmin

    labels_d, k = _compact(model.labels_.astype(np.int64))
    centres = model.cluster_centers_[np.unique(model.labels_)]  # drop a centroid left empty, if any
    medoids_d = central_members(xd, labels_d, centres)

    def rest_labels(rest: np.ndarray) -> np.ndarray:
        return pairwise_distances_argmin(x[rest], centres.astype(np.float32)).astype(np.int64)

    return _finish(x, sample, inverse, reps, labels_d, medoids_d, rest_labels, sweep=rows, rule=rule,
                   method="kmeans", silhouette=_silhouette_of(xd, labels_d))


def _cluster_density(x, sample, reps, inverse, xd, weights, among: str, *, method: str, eps: float | None,
                     min_samples: int | None, min_cluster_size: int | None) -> Clustering:
    """HDBSCAN or DBSCAN on the distinct sampled pictures, then the rest (module docstring)."""
    d = len(xd)
    if method == "dbscan":
        min_samples = CLUSTER_MIN_SAMPLES if min_samples is None else min_samples
        given = eps is not None
        eps = float(eps) if given else knee_eps(xd, min(min_samples, d))
        labels_d = fit_dbscan(xd, eps, min_samples, weights)
        params = {"eps": round(eps, 6), "min_samples": min_samples}
        rule = (f"DBSCAN, eps={eps:.4g} (cosine distance) " + ("given" if given else
                f"at the knee of the sorted distances to the {min(min_samples, d)}-th nearest work"))
    else:
        min_cluster_size = CLUSTER_MIN_CLUSTER_SIZE if min_cluster_size is None else min_cluster_size
        core = min_cluster_size if min_samples is None else min_samples
        if d < max(2, core):
            raise ParameterError("min_cluster_size" if min_samples is None else "min_samples",
                                 f"{core} needs at least {core} distinct pictures (and 2 at least); there are {among}")
        labels_d = fit_hdbscan(xd, min_cluster_size, min_samples)
        params = {"min_cluster_size": min_cluster_size, "min_samples": core}
        rule = f"HDBSCAN (min_cluster_size={min_cluster_size}, min_samples={core})"
    labels_d, k = _compact(labels_d)
    centres = np.zeros((k, xd.shape[1]), dtype=np.float64)
    ok = labels_d >= 0
    w = np.ones(d) if weights is None else weights
    np.add.at(centres, labels_d[ok], xd[ok] * w[ok, None])
    medoids_d = central_members(xd, labels_d, centres)
    clustered = np.flatnonzero(ok)
    if method == "hdbscan" and len(sample) < len(x) and k:
        core_d = k_distances(xd, core)  # HDBSCAN's core distances (cosine), itself counted
        bound = np.zeros(k, dtype=np.float32)
        np.maximum.at(bound, labels_d[ok], core_d[ok])

    def rest_labels(rest: np.ndarray) -> np.ndarray:
        out = np.full(len(rest), -1, dtype=np.int64)
        if not len(clustered):
            return out
        sims, ids = top_k(x[rest], xd[clustered], 1)
        near = clustered[ids[:, 0]]
        if method == "dbscan":  # within eps of the nearest clustered work
            close = similarity_at_least(sims[:, 0], 1.0 - eps)
        else:  # joins the hierarchy inside the cluster: mutual reachability <= its members' largest core distance
            reach = 1.0 - sims[:, 0]
            if core > 1:  # its own core distance: it is the first of its `core` works
                own, _ = top_k(x[rest], xd, core - 1)
                reach = np.maximum(reach, 1.0 - own[:, -1])
            reach = np.maximum(reach, core_d[near])
            close = similarity_at_least(1.0 - reach, 1.0 - bound[labels_d[near]])
        out[close] = labels_d[near[close]]
        return out

    result = _finish(x, sample, inverse, reps, labels_d, medoids_d, rest_labels, rule=rule, method=method,
                     silhouette=_silhouette_of(xd, labels_d), params=params)
    log.info("%s: %d clusters, %d noise works", method, result.k, len(result.noise))
    return result


def label_summary(store: Store, labels: np.ndarray, k: int, top: int = 3) -> list[dict]:
    """Per cluster and label column: the most frequent values with counts and the purity."""
    items = store.item_columns(store.label_columns)  # the label columns only
    out = []
    for c in range(k):
        members = items.iloc[np.flatnonzero(labels == c)]
        summary = {}
        for col in store.label_columns:
            counts = members[col].dropna().astype(str).value_counts()
            if len(counts):
                summary[col] = {"top": {str(v): int(n) for v, n in counts.head(top).items()},
                                "purity": round(float(counts.iloc[0] / counts.sum()), 4)}
        out.append(summary)
    return out


@dataclass(frozen=True)
class ClusterReport:
    """Result of `cluster_store`: the clustering of a store's works with paths and labels.

    Attributes:
        clustering: `Clustering` (medoid rows, (n,) int64 cluster of every work, (n,)
            float32 cosine distance to its medoid, the k sweep when k was chosen).
        paths: (n,) paths of the store's works, aligned with `clustering.labels`.
        label_summaries: per cluster, the most frequent values of each label column and
            the purity (None when the store has no labels).
        count: works in the store; plots: files written by `draw_cluster_plots`.

    `to_dict()` is the JSON document `artenc cluster` prints. For methods other than
    kmedoids it also holds `method`, `rule`, `params`, `silhouette` and `noise` (count and
    paths of the works labelled -1), and `inertia` / `distortion` are over clustered works.
    """

    clustering: Clustering
    paths: np.ndarray
    label_summaries: list[dict | None]
    count: int
    plots: list[str] | None = None

    @property
    def k(self) -> int:
        return self.clustering.k

    @property
    def rule(self) -> str:
        """How k was chosen ("given" for a fixed k)."""
        return self.clustering.rule

    @property
    def medoids(self) -> np.ndarray:
        """(k,) int64 store rows of the medoids (the representative works)."""
        return self.clustering.medoids

    @property
    def medoid_paths(self) -> list[str]:
        return [str(self.paths[m]) for m in self.clustering.medoids]

    def members(self, cluster: int) -> np.ndarray:
        """Store rows of one cluster, nearest to its medoid first (the medoid itself first)."""
        c = self.clustering
        rows = np.flatnonzero(c.labels == cluster)
        rows = rows[np.argsort(c.distances[rows], kind="stable")]
        medoid = c.medoids[cluster]
        return np.concatenate([[medoid], rows[rows != medoid]]).astype(np.int64)

    @property
    def method(self) -> str:
        return self.clustering.method

    @property
    def noise_paths(self) -> list[str]:
        """Paths of the works labelled noise (hdbscan, dbscan), in store-row order."""
        return [str(self.paths[i]) for i in self.clustering.noise]

    def to_dict(self) -> dict:
        result = self.clustering
        sizes = result.sizes
        if result.method != CLUSTER_METHOD:
            return self._method_dict()
        clusters = self._cluster_entries(result, sizes)
        doc = {
            "k": result.k,
            "count": self.count,
            "sampled": result.sample_size < self.count,
            "sample_size": result.sample_size,
            "inertia": round(float(result.distances.sum()), 6),
            "distortion": round(float(result.distances.mean()), 6),
            "medoids": self.medoid_paths,
            "sizes": [int(s) for s in sizes],
            "clusters": clusters,
        }
        if result.sweep:
            doc.update({"rule": result.rule, "sweep": result.sweep})
        if self.plots is not None:
            doc["plots"] = self.plots
        return doc

    def _cluster_entries(self, result, sizes) -> list[dict]:
        """One JSON entry per cluster: its number, medoid path, size, mean distance to the
        medoid and (when labelled) its label summary."""
        clusters = []
        for c, m in enumerate(result.medoids):
            entry = {"cluster": c, "medoid": str(self.paths[m]), "size": int(sizes[c]),
                     "mean_distance": round(float(result.distances[result.labels == c].mean()), 6)}
            if self.label_summaries[c] is not None:
                entry["labels"] = self.label_summaries[c]
            clusters.append(entry)
        return clusters

    def _method_dict(self) -> dict:
        """`to_dict` for methods other than kmedoids: the same keys plus method, rule, params,
        silhouette and noise; distances summed over the clustered works only."""
        result = self.clustering
        sizes = result.sizes
        clustered = result.distances[result.labels >= 0]
        clusters = self._cluster_entries(result, sizes)
        doc = {
            "method": result.method,
            "k": result.k,
            "count": self.count,
            "sampled": result.sample_size < self.count,
            "sample_size": result.sample_size,
            "inertia": round(float(clustered.sum()), 6),
            "distortion": round(float(clustered.mean()), 6) if len(clustered) else None,
            "silhouette": result.silhouette,
            "medoids": self.medoid_paths,
            "sizes": [int(s) for s in sizes],
            "clusters": clusters,
            "noise": {"count": len(result.noise), "paths": self.noise_paths},
            "rule": result.rule,
            "params": result.params,
        }
        if result.sweep:
            doc["sweep"] = result.sweep
        if self.plots is not None:
            doc["plots"] = self.plots
        return doc


def same_picture_labels(store: Store, keepers: np.ndarray | None = None) -> np.ndarray:
    """(n,) int64 labels, equal for works that are the same picture: equal sha256, or mapped to
    one kept work by `keepers` ((n,) row of the work standing for each row, e.g.
    `artenc.dedup.DuplicateReport.representatives`); joins are transitive."""
    n = len(store)
    codes = pd.factorize(store.item_columns(["sha256"])["sha256"].astype(object))[0]  # this column only
    codes = np.where(codes < 0, n + np.arange(n), codes)  # a missing hash equals nothing
    a, b = _label_edges(codes)
    if keepers is not None:
        keepers = np.asarray(keepers, dtype=np.int64)
        if keepers.shape != (n,):
            raise ParameterError("duplicates", f"must map each of the {n} works to a row, got shape {keepers.shape}")
        a, b = np.concatenate([a, np.arange(n)]), np.concatenate([b, keepers])
    return _components(n, a, b)


def cluster_store(store: Store, k: int | str = "auto", *, k_range: str | list[int] = CLUSTER_K_RANGE,
                  sample_size: int = CLUSTER_SAMPLE, seed: int = 0,
                  plots_dir: str | os.PathLike | None = None, keepers: np.ndarray | None = None,
                  method: str = CLUSTER_METHOD, eps: float | None = None, min_samples: int | None = None,
                  min_cluster_size: int | None = None) -> ClusterReport:
    """Representatives of a store's clusters (`cluster_vectors`), with label summaries.

    Args:
        k: number of clusters, or "auto" to sweep `k_range` ("START:STOP[:STEP]", STOP
            exclusive) and choose k by the rule in the module docstring.
        sample_size: most works in the distance matrix (4 * s^2 bytes).
        plots_dir: when given, write the elbow/silhouette curves, medoid strip and
            cluster montages there (PNG).
        keepers: (n,) int64, the row standing for each work (verified duplicates count as
            one picture, e.g. `DuplicateReport.representatives`), or None. Identical files
            (equal sha256) and identical vectors always count as one picture.
        method, eps, min_samples, min_cluster_size: as in `cluster_vectors` (module docstring).

    Returns:
        `ClusterReport`; its medoids are distinct pictures. Raises UsageError for an empty
        store, ParameterError for a bad k (above the number of distinct pictures, or "auto"
        with fewer than 3 of them), k_range, sample_size, keepers, method or its options.
    """
    method = check_method(method, k, eps=eps, min_samples=min_samples, min_cluster_size=min_cluster_size)
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    source = store if method == CLUSTER_METHOD else store.vectors  # k-medoids reads blocks, never the whole matrix
    result = cluster_vectors(source, k, k_range=k_range, sample_size=sample_size, seed=seed,
                             same=same_picture_labels(store, keepers), method=method, eps=eps,
                             min_samples=min_samples, min_cluster_size=min_cluster_size)
    summaries = label_summary(store, result.labels, result.k) if store.label_columns else [None] * result.k
    plots = None
    if plots_dir is not None:
        plots = [str(p) for p in draw_cluster_plots(store, result, plots_dir)]
    return ClusterReport(result, store.item_columns(["path"])["path"].to_numpy(), summaries, len(store), plots)


def draw_cluster_plots(store: Store, result: Clustering, out_dir: str | os.PathLike,
                       per_cluster: int = 16) -> list:
    """elbow.png and silhouette.png (after a sweep), medoids.png, cluster_NNN.png per cluster,
    noise.png (the first `per_cluster` noise works, hdbscan/dbscan, when there are some)."""
    out = Path(out_dir)
    paths = store.item_columns(["path"])["path"].to_numpy()
    written = plot_k_sweep(result.sweep, result.k, out, method=result.method) if result.sweep else []
    if result.k:
        written.append(draw_medoid_strip([paths[m] for m in result.medoids], result.sizes.tolist(),
                                         out / "medoids.png"))
    noise = result.noise
    if len(noise):
        written.append(draw_cluster_montage([paths[i] for i in noise[:per_cluster]], out / "noise.png",
                                            title=f"noise: {len(noise)} works in no cluster"))
    for c in range(result.k):
        members = np.flatnonzero(result.labels == c)
        members = members[np.argsort(result.distances[members], kind="stable")]  # medoid first
        written.append(draw_cluster_montage([paths[i] for i in members[:per_cluster]], out / f"cluster_{c:03d}.png",
                                            title=f"cluster {c}: {len(members)} works (medoid first)"))
    return written
