"""The audit of a collection: label issues, outliers and duplicate links, one row per work.

`audit_store(store)` (`artenc.Collection.audit`, `artenc audit`) returns an `AuditReport`:

- **Label issues**, per label field (the split column is left out): out-of-sample class
  probabilities of every labelled work from two sources on the stored vectors, mixed:

  1. a *linear probe*: multinomial logistic regression (scikit-learn `LogisticRegression`)
     on the vectors scaled to unit variance per dimension and rotated onto their principal
     components (`probe_features`: all of them when there are fewer works than dimensions,
     so the L2-regularised fit is the same as on the scaled vectors, only much faster on
     wide texture vectors), each work predicted by the model of the stratified fold that
     left it out (`folds` folds); the inverse regularisation C is the value of `PROBE_CS`
     whose out-of-fold predictions have the lowest log loss (a warm-started path per fold);
  2. a *kNN vote*: the k nearest other labelled works (exact cosine search,
     `artenc.search.top_k`, the work itself left out), each voting for its label with weight
     ``exp(cos / KNN_TEMPERATURE)``; probabilities are the vote shares.

  The two are mixed, ``w * probe + (1 - w) * kNN``, with the probe's share w the value of
  `MIX_WEIGHTS` whose mixture has the lowest log loss against the given labels (stacking,
  Wolpert 1992: every input is already out of sample; WikiArt dev rows pick 0.75). The mixed
  probabilities go to confident learning (Northcutt, Jiang & Chuang 2021,
  "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR; the `cleanlab`
  library): `cleanlab.filter.find_label_issues` decides which works are issues,
  `cleanlab.rank.get_label_quality_scores` (self-confidence: the probability of the given
  label, in [0, 1]) ranks them, worst first. The suggested label is the most probable one.
  A class with fewer than 2 works cannot be checked (no other work shares it): its works
  are left out with a note; a field with fewer than 2 checkable classes is skipped. Works
  with a missing label are not checked and do not vote.
- **Outliers**: each work's mean cosine distance (1 - cos, in [0, 2]) to its k nearest other
  works; ranked (rank 1 = the most isolated), with a robust z-score
  ``(d - median) / (1.4826 * MAD)`` (0 when the MAD is 0) and its percentile.
- **Duplicate links**: a `DuplicateReport` of the same store, by default
  `find_duplicates(verify=False)`: byte-identical files (sha256) and pairs with cosine >=
  `DUPLICATE_THRESHOLD_UNVERIFIED`; cheap, no SIFT (pass a verified report to use one).
- **Image quality**: the slot `AuditReport.quality` (a DataFrame of flag and score columns per
  work, row-aligned) is filled by the image-quality job when it is available (HOOK below).

The audit reads whatever vectors the store holds. For style labels the documented recipe is
a store embedded with `lite0-texture` (texture statistics, `artenc.backbones.features`), which
ranks planted wrong styles far better than the pooled lite0 vector. Tuned on WikiArt dev rows
only (`scripts/bench_label_errors.py`: 20 planted wrong styles among 800 works).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from artenc.dedup import DuplicateReport, find_duplicates
from artenc.defaults import AUDIT_FOLDS, AUDIT_K, AUDIT_TOP
from artenc.errors import ParameterError, UsageError
from artenc.labels import SPLIT_COLUMN, choose_fields, encode_labels
from artenc.quality import FLAGS as QUALITY_FLAGS
from artenc.quality import quality_flags
from artenc.search import as_unit_matrix, check_k, limit_threads, top_k

log = logging.getLogger("artenc")

PROBE_CS = tuple(float(c) for c in np.logspace(-4, -1, 7))  # inverse L2 regularisation the probe
# chooses from, half-decade steps (per unit-variance dimension; WikiArt dev rows: 0.001..0.003 wins
# for 1280-d pooled and 32k-d texture vectors alike, weaker regularisation overfits)
PROBE_MAX_ITER = 1000  # lbfgs iterations per probe fit at most
PROBE_COMPONENTS = 2048  # principal components the probe reads at most (all of them, exact, below this)
KNN_TEMPERATURE = 0.02  # kNN vote weight exp(cos / T): nearer neighbours count more (cosine units)
SOURCES = ("probe", "knn")  # where out-of-sample probabilities come from (mixed)
MIX_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the probe's share in the mixture, chosen by log loss
MIN_CLASS = 2  # works a class needs to be checked (another work must share the label)


# ---------------------------------------------------------------- probabilities on arrays


def knn_probabilities(x: np.ndarray, y: np.ndarray, n_classes: int, *, k: int = AUDIT_K,
                      weighted: bool = True, temperature: float = KNN_TEMPERATURE,
                      neighbors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Leave-one-out kNN class probabilities of every row.

    Args:
        x: (n, dim) float unit vectors; y: (n,) int64 class codes in [0, n_classes).
        k: neighbours voting (>= 1), the row itself left out.
        weighted: vote weight ``exp(cos / temperature)`` (True) or 1 per neighbour (False).
        neighbors: (sims (n, k), ids (n, k)) from `top_k(x, x, k, exclude=arange(n))`, when
            already computed (ids -1 for missing slots).

    Returns:
        (n, n_classes) float64, rows sum to 1 (a row with no neighbour: uniform).

    Source: the k-nearest-neighbour rule (Cover & Hart 1967) as a class-probability estimate.
    """
    y = np.asarray(y, dtype=np.int64)
    if neighbors is None:
        neighbors = top_k(x, x, check_k(k), exclude=np.arange(len(x)))
    sims, ids = neighbors
    ok = ids >= 0
    if weighted:
        w = np.exp((np.where(ok, sims, 0.0).astype(np.float64) - 1.0) / temperature) * ok
    else:
        w = ok.astype(np.float64)
    probs = np.zeros((len(y), n_classes))
    np.add.at(probs, (np.repeat(np.arange(len(y)), ids.shape[1]), y[np.maximum(ids, 0)].ravel()), w.ravel())
    total = probs.sum(axis=1, keepdims=True)
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), 1.0 / n_classes)


def probe_features(x: np.ndarray, components: int = PROBE_COMPONENTS) -> np.ndarray:
    """The vectors scaled to unit variance per dimension, rotated onto their principal components.

    Args:
        x: (n, dim) float vectors; components: principal components kept at most.

    Returns:
        (n, m) float64 principal-component scores (not whitened), m = min(n, dim, components),
        from the eigenvectors of the n x n Gram matrix when m = n < dim; the scaled vectors
        themselves when dim <= m (no rotation needed).

    With m = min(n, dim) nothing is lost: every row lies in the span of the n rows, and an
    L2-regularised linear model is invariant to rotations, so a probe fitted on the scores is
    the probe of the scaled vectors (the kernel trick), at a cost set by n instead of dim
    (32,492-d texture vectors of 800 works: 800 columns). Label-free: the scaling and the
    rotation never see a label, so fitting them on all rows leaks nothing into the folds.

    Source: scikit-learn `StandardScaler` and `PCA` (full or randomized SVD, Halko et al. 2011);
    PCA from the Gram matrix (Schoelkopf, Smola & Mueller 1998, kernel PCA with a linear kernel).
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
    n, dim = scaled.shape
    m = min(n, dim, int(components))
    if dim <= m:
        return scaled
    if m == n:  # every component: from the n x n Gram matrix, cheaper than an SVD of the wide matrix
        values, vectors = np.linalg.eigh(scaled @ scaled.T)
        return vectors[:, ::-1] * np.sqrt(np.clip(values[::-1], 0.0, None))
    return PCA(n_components=m, random_state=0).fit_transform(scaled)


def probe_probabilities(x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int = AUDIT_FOLDS,
                        C: float | None = None, seed: int = 0) -> np.ndarray:
    """Out-of-sample class probabilities of a cross-validated linear probe.

    Args:
        x: (n, dim) float vectors; y: (n,) int64 codes in [0, n_classes), every class with
            at least 2 rows.
        folds: stratified folds (lowered to the smallest class size, at least 2).
        C: inverse L2 regularisation of the logistic regression (on `probe_features`, i.e.
            per unit-variance dimension); None: the value of `PROBE_CS` whose out-of-fold
            probabilities have the lowest log loss.

    Returns:
        (n, n_classes) float64: row i predicted by the model fitted without i's fold.

    Each fold fits the C values in increasing order, each from the previous solution (a
    warm-started regularisation path, as scikit-learn's `LogisticRegressionCV`), on one BLAS
    thread (`limit_threads`: small products, and busy cores make BLAS threads spin; measured
    30x faster at load 10 on 2 cores). Fits stopped by the iteration cap are kept (their
    ConvergenceWarning is silenced). Repeating the folds with other shuffles (averaged) did
    not rank planted errors better on WikiArt dev rows.

    Source: scikit-learn `LogisticRegression` (lbfgs, multinomial), `StratifiedKFold`,
    `log_loss`; the features of `probe_features`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    cs = PROBE_CS if C is None else (float(C),)
    smallest = int(np.bincount(y, minlength=n_classes).min())
    cv = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    probs = np.zeros((len(cs), len(y), n_classes))
    with limit_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        z = probe_features(x)
        for fit_rows, test_rows in cv.split(z, y):
            path = LogisticRegression(max_iter=PROBE_MAX_ITER, warm_start=True)
            for j, c in enumerate(cs):
                path.set_params(C=c).fit(z[fit_rows], y[fit_rows])
                probs[j][np.ix_(test_rows, path.classes_)] = path.predict_proba(z[test_rows])
    losses = [log_loss(y, p, labels=np.arange(n_classes)) for p in probs]
    best = int(np.argmin(losses))
    log.info("audit: probe C = %g (out-of-fold log loss %.4f)", cs[best], losses[best])
    return probs[best]


def mixture_weight(y: np.ndarray, first: np.ndarray, second: np.ndarray,
                   weights: Sequence[float] = MIX_WEIGHTS) -> float:
    """The share w in `weights` whose mixture ``w * first + (1 - w) * second`` has the lowest log loss.

    Args:
        y: (n,) int64 codes; first, second: (n, C) out-of-sample class probabilities.
        weights: candidate shares of `first`, in [0, 1] (ties: the first listed).

    Returns:
        The chosen w (float).

    Source: stacking (Wolpert, "Stacked generalization", Neural Networks 1992) on out-of-fold
    predictions, scored with scikit-learn `log_loss`.
    """
    from sklearn.metrics import log_loss

    labels = np.arange(first.shape[1])
    losses = [log_loss(y, w * first + (1.0 - w) * second, labels=labels) for w in weights]
    best = float(weights[int(np.argmin(losses))])
    log.info("audit: probe share of the mixture %.2f (log loss %.4f)", best, min(losses))
    return best


@dataclass
class LabelScores:
    """Label-issue scores of one field on arrays (`label_issues`); rows not checked hold NaN / -1.

    Attributes:
        checked: (n,) bool, the rows that were checked (labelled, class with >= 2 works).
        pred_probs: (n, C) float64 out-of-sample probabilities (NaN rows where not checked).
        quality: (n,) float64 label quality in [0, 1] (cleanlab self-confidence), NaN where not checked.
        is_issue: (n,) bool, cleanlab's verdict.
        suggested: (n,) int64 most probable class, -1 where not checked.
        ranking: (m,) int64 the checked rows, worst label quality first (ties by row).
        neighbors: (sims (n, k) float32, ids (n, k) int64) the kNN voters (-1: none).
        skipped_classes: codes of classes left out (fewer than MIN_CLASS works).
        sources: the probability sources mixed.
        probe_weight: the probe's share w of the mixture (1.0 / 0.0 when it is the only source).
    """

    checked: np.ndarray
    pred_probs: np.ndarray
    quality: np.ndarray
    is_issue: np.ndarray
    suggested: np.ndarray
    ranking: np.ndarray
    neighbors: tuple[np.ndarray, np.ndarray]
    skipped_classes: list[int]
    sources: tuple[str, ...]
    probe_weight: float = 1.0


def label_issues(x: np.ndarray, y: np.ndarray, *, k: int = AUDIT_K, folds: int = AUDIT_FOLDS,
                 C: float | None = None, seed: int = 0, sources: Sequence[str] = SOURCES) -> LabelScores:
    """Rank the labels of one field by how likely they are wrong (module docstring).

    Args:
        x: (n, dim) float unit vectors (store rows).
        y: (n,) int class codes, -1 for a missing label.
        k: kNN voters per work; folds: probe folds; C: probe regularisation (None: chosen by
            cross-validation, `probe_probabilities`); seed: fold shuffling.
        sources: a non-empty subset of ("probe", "knn"), averaged.

    Returns:
        `LabelScores`. Fewer than 2 checkable classes: nothing is checked (`checked` all False).

    Raises:
        ParameterError: bad x (see `as_unit_matrix`), y of another length, k < 1, folds < 2,
        C <= 0, an unknown source.

    Source: confident learning (Northcutt et al. 2021), `cleanlab.filter.find_label_issues`
    and `cleanlab.rank.get_label_quality_scores(method="self_confidence")`.
    """
    x = as_unit_matrix(x, "vectors")
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    n = len(x)
    if len(y) != n:
        raise ParameterError("labels", f"must hold one code per vector ({n}), got {len(y)}")
    k = check_k(k)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ParameterError("folds", f"must be an integer >= 2, got {folds!r}")
    if C is not None and not C > 0:
        raise ParameterError("C", f"must be > 0, got {C!r}")
    sources = tuple(sources)
    if not sources or set(sources) - set(SOURCES):
        raise ParameterError("sources", f"must be a non-empty subset of {SOURCES}, got {sources!r}")
    counts = np.bincount(y[y >= 0], minlength=0) if (y >= 0).any() else np.zeros(0, np.int64)
    skipped = [int(c) for c in np.flatnonzero((counts > 0) & (counts < MIN_CLASS))]
    kept = np.flatnonzero(counts >= MIN_CLASS)
    checked = (y >= 0) & np.isin(y, kept)
    n_classes = len(kept)
    rows = np.flatnonzero(checked)
    out = LabelScores(checked=np.zeros(n, bool) if n_classes < 2 else checked,
                      pred_probs=np.full((n, max(int(counts.size), 0)), np.nan), quality=np.full(n, np.nan),
                      is_issue=np.zeros(n, bool), suggested=np.full(n, -1, np.int64),
                      ranking=np.zeros(0, np.int64),
                      neighbors=(np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)),
                      skipped_classes=skipped, sources=sources)
    if n_classes < 2:
        return out
    code = np.full(int(counts.size), -1, np.int64)
    code[kept] = np.arange(n_classes)
    xs, ys = x[rows], code[y[rows]]
    sims, ids = top_k(xs, xs, k, exclude=np.arange(len(rows)))
    probe = probe_probabilities(xs, ys, n_classes, folds=folds, C=C, seed=seed) if "probe" in sources else None
    knn = knn_probabilities(xs, ys, n_classes, neighbors=(sims, ids)) if "knn" in sources else None
    if probe is None or knn is None:
        probs, out.probe_weight = (knn, 0.0) if probe is None else (probe, 1.0)
    else:
        out.probe_weight = mixture_weight(ys, probe, knn)
        probs = out.probe_weight * probe + (1.0 - out.probe_weight) * knn
    probs = probs / probs.sum(axis=1, keepdims=True)

    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(ys, probs, method="self_confidence")
    issue = find_label_issues(ys, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    out.pred_probs[np.ix_(rows, kept)] = probs
    out.quality[rows] = quality
    out.is_issue[rows] = issue
    out.suggested[rows] = kept[probs.argmax(axis=1)]
    out.ranking = rows[np.lexsort((rows, quality))]
    out.neighbors[0][rows], out.neighbors[1][rows] = sims, np.where(ids >= 0, rows[np.maximum(ids, 0)], -1)
    return out


@dataclass
class OutlierScores:
    """kNN-distance outlier scores (`outlier_scores`).

    Attributes:
        score: (n,) float64 mean cosine distance (1 - cos, in [0, 2]) to the k nearest other works.
        z: (n,) float64 robust z-score of `score` (median / MAD; 0 when the MAD is 0).
        percentile: (n,) float64 share of works with a lower score, in [0, 1].
        rank: (n,) int64, 1 = the most isolated work (ties by row).
        ranking: (n,) int64 rows, most isolated first.
        neighbors: (sims (n, k) float32, ids (n, k) int64).
    """

    score: np.ndarray
    z: np.ndarray
    percentile: np.ndarray
    rank: np.ndarray
    ranking: np.ndarray
    neighbors: tuple[np.ndarray, np.ndarray]


def outlier_scores(x: np.ndarray, k: int = AUDIT_K) -> OutlierScores:
    """Score every work by its mean cosine distance to its k nearest other works.

    Args:
        x: (n, dim) float unit vectors; k: neighbours (>= 1; fewer when the store is smaller).

    Returns:
        `OutlierScores`; a store of one work scores 0.

    Raises:
        ParameterError: bad x or k < 1.

    Source: the kNN-distance outlier score (Ramaswamy, Rastogi & Shim 2000, mean over the k
    nearest as in Angiulli & Pizzuti 2002); robust z with the MAD scaled by 1.4826 (Iglewicz &
    Hoaglin 1993).
    """
    x = as_unit_matrix(x, "vectors")
    n = len(x)
    sims, ids = top_k(x, x, check_k(k), exclude=np.arange(n))
    ok = ids >= 0
    dist = np.where(ok, 1.0 - sims.astype(np.float64), 0.0)
    score = dist.sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
    median = np.median(score) if n else 0.0
    mad = 1.4826 * np.median(np.abs(score - median)) if n else 0.0
    z = (score - median) / mad if mad > 0 else np.zeros(n)
    ranking = np.lexsort((np.arange(n), -score))
    rank = np.empty(n, np.int64)
    rank[ranking] = np.arange(1, n + 1)
    percentile = np.searchsorted(np.sort(score), score, side="left") / max(n, 1)
    return OutlierScores(score, z, percentile, rank, ranking, (sims, ids))


# ---------------------------------------------------------------- typed results


@dataclass(frozen=True)
class AuditNeighbor:
    """A neighbour shown beside an issue or an outlier: store row, path, cosine, its label."""

    row: int
    path: str
    similarity: float
    label: object = None

    def to_dict(self) -> dict:
        doc = {"row": self.row, "path": self.path, "similarity": round(float(self.similarity), 6)}
        if self.label is not None:
            doc["label"] = self.label
        return doc


@dataclass(frozen=True)
class LabelIssue:
    """A work whose label looks wrong: given and suggested label, quality in [0, 1], neighbours."""

    row: int
    path: str
    given: str
    suggested: str
    quality: float
    rank: int
    is_issue: bool
    neighbors: list[AuditNeighbor]

    def to_dict(self) -> dict:
        return {"row": self.row, "path": self.path, "rank": self.rank, "given": self.given,
                "suggested": self.suggested, "label_quality": round(float(self.quality), 6),
                "is_issue": self.is_issue, "neighbors": [n.to_dict() for n in self.neighbors]}


@dataclass(frozen=True)
class Outlier:
    """A work far from the others: mean cosine distance to its k nearest, robust z, rank, links."""

    row: int
    path: str
    score: float
    z: float
    rank: int
    duplicates: list[int]
    neighbors: list[AuditNeighbor]

    def to_dict(self) -> dict:
        return {"row": self.row, "path": self.path, "rank": self.rank, "score": round(float(self.score), 6),
                "z": round(float(self.z), 4), "duplicates": self.duplicates,
                "neighbors": [n.to_dict() for n in self.neighbors]}


@dataclass
class FieldAudit:
    """The label audit of one field: class names, the scores, and notes on what was left out."""

    field: str
    classes: list[str]
    given: np.ndarray  # (n,) object: the stored labels as text (None when missing)
    scores: LabelScores
    notes: list[str] = field(default_factory=list)

    @property
    def suggested(self) -> np.ndarray:
        """(n,) object: the suggested label of each checked work (None elsewhere)."""
        names = np.array([*self.classes, None], dtype=object)
        return names[self.scores.suggested]  # -1 picks None

    @property
    def accuracy(self) -> float | None:
        """Share of checked works whose suggested label is the given one (out of sample)."""
        rows = self.scores.checked
        if not rows.any():
            return None
        return float(np.mean(self.suggested[rows] == self.given[rows]))


@dataclass
class AuditReport:
    """Result of `audit_store`; `to_dict()` is the JSON document `artenc audit --json` prints.

    Attributes:
        store: the store folder; paths / relpaths: (n,) paths of the works (store rows).
        k, folds, top, seed: the settings used (`top`: works listed per list in `to_dict`).
        fields: per label field, its `FieldAudit`.
        outliers: `OutlierScores` of every work.
        duplicates: the `DuplicateReport` whose pairs link works (`duplicate_links`).
        quality: image-quality scores and flags per work (`artenc.quality.quality_flags`,
            row-aligned DataFrame; nullable booleans, NA where a store predates the scores).
        notes: what was left out, in words.
    """

    store: str
    paths: np.ndarray
    relpaths: np.ndarray
    k: int
    folds: int
    top: int
    seed: int
    fields: dict[str, FieldAudit]
    outliers: OutlierScores
    duplicates: DuplicateReport
    notes: list[str] = field(default_factory=list)
    quality: pd.DataFrame | None = None  # artenc.quality.quality_flags(items), row-aligned

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def duplicate_links(self) -> list[list[int]]:
        """Per work, the sorted rows of the works it is a duplicate pair with."""
        links: list[set[int]] = [set() for _ in range(self.count)]
        for i, j in zip(self.duplicates.pairs.i.tolist(), self.duplicates.pairs.j.tolist(), strict=True):
            links[i].add(j)
            links[j].add(i)
        return [sorted(s) for s in links]

    def _neighbors(self, sims: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, shown: int) -> list:
        return [AuditNeighbor(int(j), str(self.paths[j]), float(s), None if labels is None else labels[j])
                for s, j in zip(sims[:shown], ids[:shown], strict=True) if j >= 0]

    def issues(self, field: str, top: int | None = None, *, neighbors: int | None = None) -> list[LabelIssue]:
        """The suspect labels of `field`, worst label quality first: works that confident learning
        flags (`is_issue`) or whose suggested label is not the given one; at most `top` (default
        `self.top`), each with its `neighbors` (default k) nearest labelled works. `rank` is the
        place in the whole ranking (1 = worst)."""
        audit = self.fields[field]
        s, names = audit.scores, audit.suggested
        top = self.top if top is None else top
        shown = self.k if neighbors is None else neighbors
        out = []
        for place, r in enumerate(s.ranking.tolist(), start=1):
            if len(out) >= top:
                break
            if s.is_issue[r] or names[r] != audit.given[r]:
                out.append(LabelIssue(r, str(self.paths[r]), str(audit.given[r]), str(names[r]),
                                      float(s.quality[r]), place, bool(s.is_issue[r]),
                                      self._neighbors(s.neighbors[0][r], s.neighbors[1][r], audit.given, shown)))
        return out

    def outlier_list(self, top: int | None = None, *, neighbors: int | None = None) -> list[Outlier]:
        """The most isolated works first (at most `top`, default `self.top`), with their
        duplicate links and `neighbors` (default k) nearest works."""
        o, links = self.outliers, self.duplicate_links
        top = self.top if top is None else top
        shown = self.k if neighbors is None else neighbors
        return [Outlier(int(r), str(self.paths[r]), float(o.score[r]), float(o.z[r]), int(o.rank[r]), links[r],
                        self._neighbors(o.neighbors[0][r], o.neighbors[1][r], None, shown))
                for r in o.ranking[:top]]

    def table(self) -> pd.DataFrame:
        """One row per work (store order): row, path, relpath; per field F: F_given, F_suggested,
        F_label_quality (in [0, 1], empty where not checked), F_issue; outlier_score, outlier_z,
        outlier_percentile, outlier_rank; duplicates (space-separated rows); quality columns
        when the image-quality job filled `quality`."""
        frame = pd.DataFrame({"row": np.arange(self.count), "path": self.paths, "relpath": self.relpaths})
        for name, audit in self.fields.items():
            frame[f"{name}_given"] = audit.given
            frame[f"{name}_suggested"] = audit.suggested
            frame[f"{name}_label_quality"] = np.round(audit.scores.quality, 6)
            frame[f"{name}_issue"] = audit.scores.is_issue
        o = self.outliers
        frame["outlier_score"] = np.round(o.score, 6)
        frame["outlier_z"] = np.round(o.z, 4)
        frame["outlier_percentile"] = np.round(o.percentile, 4)
        frame["outlier_rank"] = o.rank
        frame["duplicates"] = [" ".join(map(str, rows)) for rows in self.duplicate_links]
        if self.quality is not None:
            frame = pd.concat([frame, self.quality.reset_index(drop=True).add_prefix("quality_")], axis=1)
        return frame

    def _quality_dict(self) -> dict | None:
        """Per image-quality flag: how many works it flags and the first `top` flagged rows."""
        if self.quality is None:
            return None
        flags = [c for c in QUALITY_FLAGS if c in self.quality.columns]
        marked = {c: self.quality[c].fillna(False).to_numpy(dtype=bool) for c in flags}
        return {"flags": {c: int(m.sum()) for c, m in marked.items()},
                "flagged": {c: np.flatnonzero(m).tolist()[: self.top] for c, m in marked.items()}}

    def to_dict(self) -> dict:
        links = self.duplicate_links
        label_doc = {}
        for name, audit in self.fields.items():
            s = audit.scores
            accuracy = audit.accuracy
            label_doc[name] = {
                "classes": audit.classes, "checked": int(s.checked.sum()), "issues": int(s.is_issue.sum()),
                "out_of_sample_accuracy": None if accuracy is None else round(accuracy, 4),
                "sources": list(s.sources), "notes": audit.notes,
                "worst": [i.to_dict() for i in self.issues(name)],
            }
        return {
            "store": self.store, "count": self.count, "k": self.k, "folds": self.folds, "top": self.top,
            "label_issues": label_doc,
            "outliers": {"k": self.k, "median_score": round(float(np.median(self.outliers.score)), 6)
                         if self.count else None,
                         "worst": [o.to_dict() for o in self.outlier_list()]},
            "duplicates": {"threshold": self.duplicates.threshold, "verified": self.duplicates.verified,
                           "pairs": self.duplicates.duplicate_pairs, "groups": len(self.duplicates.groups),
                           "linked_works": sum(1 for x in links if x)},
            "quality": self._quality_dict(),
            "notes": self.notes,
        }


def _field_audit(name: str, values: pd.Series, x: np.ndarray, *, k: int, folds: int, seed: int) -> FieldAudit:
    codes, classes = encode_labels(pd.DataFrame({name: values}), [name])
    y, names = codes[:, 0], classes[name]
    given = np.array([names[c] if c >= 0 else None for c in y], dtype=object)
    scores = label_issues(x, y, k=k, folds=folds, seed=seed)
    notes = []
    if scores.skipped_classes:
        small = ", ".join(f"{names[c]!r}" for c in scores.skipped_classes[:10])
        more = f" and {len(scores.skipped_classes) - 10} more" if len(scores.skipped_classes) > 10 else ""
        notes.append(f"{name}: {len(scores.skipped_classes)} label value(s) held by fewer than {MIN_CLASS} works "
                     f"not checked (no other work shares them): {small}{more}")
    if not scores.checked.any():
        notes.append(f"{name}: not checked: fewer than 2 label values are held by {MIN_CLASS} works or more")
    return FieldAudit(name, names, given, scores, notes)


def audit_store(store, fields: Sequence[str] | None = None, *, k: int = AUDIT_K, folds: int = AUDIT_FOLDS,
                top: int = AUDIT_TOP, seed: int = 0, duplicates: DuplicateReport | None = None,
                split_column: str = SPLIT_COLUMN) -> AuditReport:
    """Audit a store: label issues per field, outliers, duplicate links (module docstring).

    Args:
        store: an `artenc.store.Store`.
        fields: label columns to check (default: every label column but `split_column`; a
            store without labels gets no label audit, with a note).
        k: neighbours of the kNN vote and of the outlier score (>= 1).
        folds: stratified folds of the linear probe (>= 2).
        top: works listed per list in `to_dict()` (>= 0); the table holds every work.
        seed: fold shuffling.
        duplicates: a `DuplicateReport` of this store (default: `find_duplicates(store,
            verify=False)`: identical files and cosine >= 0.9, no SIFT).

    Returns:
        `AuditReport` (store rows and paths; `table()` one row per work; `to_dict()`).

    Raises:
        UsageError: an empty store. ParameterError: an unknown field, k < 1, folds < 2, top < 0.
    """
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    k = check_k(k)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ParameterError("folds", f"must be an integer >= 2, got {folds!r}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise ParameterError("top", f"must be an integer >= 0, got {top!r}")
    fields = [fields] if isinstance(fields, str) else fields
    notes: list[str] = []
    if fields:
        chosen = choose_fields(store.label_columns, fields, split_column, where=str(store.root))
    else:
        chosen = [c for c in store.label_columns if c != split_column]
        if not chosen:
            notes.append("no label columns: labels not checked (embed with a labels CSV to check them)")
    if split_column in chosen:
        chosen.remove(split_column)
        notes.append(f"{split_column}: the split column is not a label of the works; not checked")
    items = store.items
    x = np.asarray(store.vectors)
    audits = {}
    for name in chosen:
        log.info("audit: label issues of %s", name)
        audits[name] = _field_audit(name, items[name], x, k=k, folds=int(folds), seed=seed)
        notes.extend(audits[name].notes)
    log.info("audit: outliers")
    outliers = outlier_scores(x, k)
    if duplicates is None:
        log.info("audit: duplicate links (identical files, cosine >= the unverified threshold)")
        duplicates = find_duplicates(store, verify=False)
    quality = quality_flags(items).reset_index(drop=True)  # scores stored at embed time: no image opened
    unmeasured = int((~quality["computed"].astype(bool)).sum())
    if unmeasured:  # NaN scores flag nothing: say so rather than let zero counts read as "no issue"
        notes.append(f"image quality: {unmeasured} of {len(quality)} works not measured (embedded without "
                     "quality scores): only their size flags are counted")
    return AuditReport(store=str(store.root), paths=items["path"].astype(str).to_numpy(),
                       relpaths=items["relpath"].astype(str).to_numpy(), k=k, folds=int(folds), top=int(top),
                       seed=seed, fields=audits, outliers=outliers, duplicates=duplicates, notes=notes,
                       quality=quality)
