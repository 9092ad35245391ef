"""Retrieval metrics on embeddings: P@k, mAP@k, R@k, kNN accuracy, linear-probe accuracy,
with bootstrap confidence intervals, small-set warnings and paired comparisons.

Plain functions on arrays (vectors are L2-normalised float32, so inner product = cosine).
When a query is also in the gallery (same id), it is left out of its own neighbours
(leave-one-out). Definitions, for a query with R relevant gallery items (same label):

- P@k: fraction of the k nearest neighbours that share the query's label.
- mAP@k: mean over queries of AP@k = sum_{i<=k} P@i * rel_i / min(k, R).
- R@k: fraction of queries with at least one relevant item among the k nearest
  (the metric-learning "recall@k").
- kNN accuracy: the majority label of the k nearest (ties: larger summed similarity)
  equals the query's label.
- linear-probe accuracy: logistic regression trained on the gallery and tested on the
  queries, its regularisation C chosen by stratified cross-validation on the gallery alone
  (`fit_linear_probe`); when queries and gallery are the same set, nested: an outer
  5-fold stratified cross-validation scores, an inner one on each training part picks C.

Uncertainty (`bootstrap_intervals`, `compare_reports`): P@k, mAP@k and kNN accuracy are
means of per-query values (`QueryScores`), so resampling the queries with replacement
gives percentile bootstrap intervals (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap", ch. 13) and, for two encoders on the same queries, a paired bootstrap test of
the mean per-query difference (ibid., ch. 16). The gallery is held fixed: the intervals say
how much the numbers would move with other queries drawn from the same population.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from artenc.errors import ParameterError
from artenc.labels import choose_fields, is_missing
from artenc.search import top_k
from artenc.vote import knn_vote

log = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 1000
"""Bootstrap resamples of the queries behind the confidence intervals and paired tests (count)."""
CONFIDENCE = 0.95
"""Coverage of the percentile bootstrap intervals."""
SIGNIFICANCE = 0.05
"""A difference between two encoders is marked significant when its paired-bootstrap p-value is below this."""
MIN_QUERIES = 30
"""Fewer queries than this get a warning: the metrics are too noisy to rank encoders on."""
PROBE_CS = (0.1, 1.0, 10.0, 100.0, 1000.0)
"""Inverse regularisation strengths C the linear probe chooses from (scikit-learn's LogisticRegression)."""
PROBE_FOLDS = 5
"""Outer folds of the linear probe's cross-validation when queries = gallery."""
PROBE_INNER_FOLDS = 3
"""Folds of the cross-validation on the training side that picks C."""
PROBE_MAX_ITER = 500
"""lbfgs iterations per probe fit at most (weakly regularised fits of separable data never converge)."""

BOOTSTRAPPED = ("p_at_k", "map_at_k", "knn_accuracy")
"""Metrics with confidence intervals: the means of `QueryScores` columns of the same names."""


def topk_neighbors(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    query_ids: np.ndarray | None = None,
    gallery_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query in `gallery` by cosine similarity, leave-one-out by id.

    Args:
        queries: (q, dim) float vectors; gallery: (g, dim) float vectors (float32 used).
        k: neighbours per query, >= 1.
        query_ids, gallery_ids: (q,), (g,) ids (e.g. store rows); a gallery item whose id
            equals the query's id is left out of its neighbours.

    Returns:
        (similarities (q, k) float32 descending, indices (q, k) int64 into `gallery`);
        missing slots (fewer than k candidates) hold -inf and -1.

    Raises:
        ParameterError (a ValueError): bad arrays, dims that differ, k < 1.

    The search itself is `artenc.search.top_k` (blocks, ties by smaller index).
    """
    exclude = None
    if query_ids is not None and gallery_ids is not None:
        column = {int(g): j for j, g in enumerate(np.asarray(gallery_ids))}
        exclude = np.array([column.get(int(q), -1) for q in np.asarray(query_ids)], dtype=np.int64)
    return top_k(queries, gallery, k, exclude=exclude)


def relevance(query_labels: np.ndarray, gallery_labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(q, k) bool: neighbour j of query i has the query's label (missing slots: False)."""
    neighbour_labels = np.asarray(gallery_labels, dtype=object)[np.maximum(idx, 0)]
    return (neighbour_labels == np.asarray(query_labels, dtype=object)[:, None]) & (idx >= 0)


def precision_at_k(rel: np.ndarray) -> float:
    """Mean P@k of (q, k) bool relevance; NaN with no query."""
    return float(rel.mean()) if rel.size else float("nan")


def recall_at_k(rel: np.ndarray) -> float:
    """Share of queries with a relevant item in their top k; NaN with no query."""
    return float(rel.any(axis=1).mean()) if rel.size else float("nan")


def average_precision_at_k(rel: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """(q,) float64 AP@k per query, denominator min(k, R); queries with R = 0 score 0.

    Args:
        rel: (q, k) bool relevance of the ranked neighbours.
        n_relevant: (q,) int relevant gallery items R of each query (the query itself excluded).
    """
    if not rel.size:
        return np.zeros(len(rel))
    k = rel.shape[1]
    hits = np.cumsum(rel, axis=1)
    precision_i = hits / np.arange(1, k + 1)
    denom = np.minimum(k, np.asarray(n_relevant))
    return np.where(denom > 0, (precision_i * rel).sum(axis=1) / np.maximum(denom, 1), 0.0)


def map_at_k(rel: np.ndarray, n_relevant: np.ndarray) -> float:
    """mean AP@k with denominator min(k, R); queries with R = 0 count as 0."""
    if not rel.size:
        return float("nan")
    return float(average_precision_at_k(rel, n_relevant).mean())


def knn_correct(query_labels: np.ndarray, gallery_labels: np.ndarray, idx: np.ndarray,
                sims: np.ndarray) -> np.ndarray:
    """(q,) bool: the `artenc.vote.knn_vote` of query i's neighbours `idx[i]` (-1: none) is its label."""
    gallery_labels = np.asarray(gallery_labels, dtype=object)
    out = np.zeros(len(idx), dtype=bool)
    for q, (row, srow) in enumerate(zip(idx, sims, strict=True)):
        ok = row >= 0
        pred, _, _ = knn_vote(gallery_labels[row[ok]], srow[ok])
        out[q] = pred == query_labels[q]
    return out


def knn_accuracy(query_labels: np.ndarray, gallery_labels: np.ndarray, idx: np.ndarray, sims: np.ndarray) -> float:
    """Mean of `knn_correct`; NaN with no query."""
    if not len(idx):
        return float("nan")
    return float(knn_correct(query_labels, gallery_labels, idx, sims).mean())


def fit_linear_probe(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """A logistic regression on (x, y) whose C was chosen by stratified cross-validation on (x, y) only.

    Args:
        x: (n, dim) float features; y: (n,) labels (compared as given), at least 2 classes.
        seed: shuffles the folds.

    Returns:
        a fitted `sklearn.linear_model.LogisticRegression` (L2, lbfgs, at most
        `PROBE_MAX_ITER` iterations); its `C` is the value of `PROBE_CS` with the best mean
        accuracy over `PROBE_INNER_FOLDS` stratified folds (fewer when the smallest class is
        smaller, at least 2; ties: the smaller C), refit on all of (x, y). Unit-norm features
        need weak regularisation: scikit-learn's default C = 1 underfits them.

    Each fold fits the C values in increasing order, each starting from the previous
    solution (a warm-started regularisation path, as scikit-learn's LogisticRegressionCV).
    Fits stopped by the iteration cap are kept (their ConvergenceWarning is silenced): the
    cross-validation judges them on accuracy like the others. Source: scikit-learn's
    `LogisticRegression` (Pedregosa et al. 2011).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    folds = max(2, min(PROBE_INNER_FOLDS, int(pd.Series(y).value_counts().min())))
    accuracy = np.zeros(len(PROBE_CS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # a class smaller than the folds: scikit-learn warns, the fold without it simply misses it
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fit_rows, test_rows in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y):
            path = LogisticRegression(max_iter=PROBE_MAX_ITER, warm_start=True)
            for j, c in enumerate(PROBE_CS):
                path.set_params(C=c).fit(x[fit_rows], y[fit_rows])
                accuracy[j] += (path.predict(x[test_rows]) == y[test_rows]).mean()
        best = PROBE_CS[int(np.argmax(accuracy))]
        return LogisticRegression(C=best, max_iter=PROBE_MAX_ITER).fit(x, y)


def linear_probe_correct(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray | None = None,
    test_y: np.ndarray | None = None, seed: int = 0,
) -> np.ndarray | None:
    """(q,) bool: the linear probe (`fit_linear_probe`) predicts each test label; None when undefined.

    With a test set, the probe is fit on (train_x, train_y) and predicts test_x. Without one
    (queries = gallery), nested cross-validation: `PROBE_FOLDS` outer stratified folds
    (fewer for a small class), the probe refit with its own inner C choice on each training
    part, every item predicted once. None when the training side has fewer than 2 classes,
    or (no test set) a class with a single member.
    """
    from sklearn.model_selection import StratifiedKFold

    train_y = np.asarray(train_y).astype(str)
    if len(np.unique(train_y)) < 2:
        return None
    if test_x is not None:
        return fit_linear_probe(train_x, train_y, seed).predict(test_x) == np.asarray(test_y).astype(str)
    folds = min(PROBE_FOLDS, int(pd.Series(train_y).value_counts().min()))
    if folds < 2:
        return None
    correct = np.zeros(len(train_y), dtype=bool)
    for fit_rows, test_rows in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(train_x, train_y):
        probe = fit_linear_probe(train_x[fit_rows], train_y[fit_rows], seed)
        correct[test_rows] = probe.predict(train_x[test_rows]) == train_y[test_rows]
    return correct


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray | None = None,
    test_y: np.ndarray | None = None, seed: int = 0,
) -> float:
    """Linear-probe accuracy in [0, 1] (`linear_probe_correct`: C chosen on the training side
    only; with no test set, nested stratified cross-validation); NaN when undefined."""
    correct = linear_probe_correct(train_x, train_y, test_x, test_y, seed)
    return float("nan") if correct is None or not len(correct) else float(correct.mean())


@dataclass(frozen=True)
class QueryScores:
    """Per-query values whose means are P@k, mAP@k and kNN accuracy (the bootstrap resamples them).

    Attributes:
        keys: (q,) the queries' identities (store paths in `evaluate_arrays`, else ids or rows):
            `compare_reports` pairs two encoders' queries by them.
        p_at_k, map_at_k: (q,) float64 P@k and AP@k of each query.
        knn_accuracy: (q,) float64, 1.0 where the kNN vote is right.
    """

    keys: np.ndarray
    p_at_k: np.ndarray
    map_at_k: np.ndarray
    knn_accuracy: np.ndarray

    def matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(q, 3) float64: the `BOOTSTRAPPED` columns side by side (of `rows` only, if given)."""
        m = np.stack([getattr(self, name) for name in BOOTSTRAPPED], axis=1).astype(np.float64)
        return m if rows is None else m[rows]


def _resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, m) means of `values` (q, m) over queries drawn with replacement (q per
    resample), in blocks of at most ~2**22 drawn values so memory stays small."""
    rng = np.random.default_rng(seed)
    q = len(values)
    block = max(1, 2**22 // max(q, 1))
    means = [values[rng.integers(0, q, size=(min(block, n_resamples - start), q))].mean(axis=1)
             for start in range(0, n_resamples, block)]
    return np.concatenate(means) if means else np.zeros((0, values.shape[1]))


def _check_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 0:
        raise ParameterError("n_bootstrap", f"must be an integer >= 0 (0: no intervals), got {n_resamples!r}")


def bootstrap_intervals(values: np.ndarray, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                        confidence: float = CONFIDENCE) -> np.ndarray:
    """Percentile bootstrap intervals of the column means of `values`.

    Args:
        values: (q, m) float per-query values (e.g. `QueryScores.matrix()`), q >= 1.
        n_resamples: resamples of the q rows with replacement (the same rows for every column).
        seed: the generator's seed (numpy PCG64): the same inputs give the same intervals.
        confidence: coverage, e.g. 0.95 -> the 2.5th and 97.5th percentiles.

    Returns:
        (m, 2) float64 [low, high] per column.

    Raises:
        ParameterError: n_resamples < 1 or confidence outside (0, 1).

    Source: Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13.
    """
    _check_resamples(n_resamples)
    if n_resamples < 1:
        raise ParameterError("n_bootstrap", f"must be >= 1 for an interval, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ParameterError("confidence", f"must be in (0, 1), got {confidence}")
    means = _resampled_means(np.asarray(values, dtype=np.float64), n_resamples, seed)
    tail = (1 - confidence) / 2
    return np.quantile(means, [tail, 1 - tail], axis=0).T


def paired_bootstrap(differences: np.ndarray, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap of per-query differences between two encoders on the same queries.

    Args:
        differences: (q, m) float, per query and metric: value of B minus value of A.
        n_resamples, seed, confidence: as in `bootstrap_intervals`.

    Returns:
        (intervals (m, 2) percentile interval of the mean difference, p_values (m,) two-sided):
        p = (1 + #{|mean* - mean| >= |mean|}) / (n_resamples + 1), the bootstrap test of a zero
        mean difference with the resampled means centred on the observed one (Efron &
        Tibshirani 1993, ch. 16; the +1 keeps a Monte-Carlo p-value above 0). A difference of
        exactly 0 gives p = 1.
    """
    diffs = np.asarray(differences, dtype=np.float64)
    intervals = bootstrap_intervals(diffs, n_resamples, seed, confidence)
    means = _resampled_means(diffs, n_resamples, seed)
    observed = diffs.mean(axis=0)
    extreme = (np.abs(means - observed) >= np.abs(observed) - 1e-12).sum(axis=0)
    return intervals, (1 + extreme) / (n_resamples + 1)


@dataclass
class FieldMetrics:
    """Retrieval metrics of one label field (`retrieval_metrics`); fractions in [0, 1], NaN where undefined.

    Attributes:
        p_at_k, map_at_k, r_at_k, knn_accuracy: the means over queries (module docstring).
        linear_probe_accuracy: None when skipped, NaN when undefined (one class).
        n_queries, n_gallery: labelled queries and gallery items.
        p_at_k_ci, map_at_k_ci, knn_accuracy_ci: 95 % percentile bootstrap intervals
            (low, high) over the queries, None when not computed (`n_bootstrap=0`) or no query.
        warnings: why the numbers may mislead (a set too small for k, kNN below chance).
        chance_accuracy: share of the queries whose label is the gallery's most frequent one
            (what always answering that label scores); NaN with no query.
        classifier_accuracy: for the field of the encoder's own classifier (`loss=ce`), the
            share of the queries whose label it predicts (`classifier_accuracies`); else None.
        scores: the per-query values behind the means (not in the JSON document).
    """

    p_at_k: float
    map_at_k: float
    r_at_k: float
    knn_accuracy: float
    linear_probe_accuracy: float | None
    n_queries: int
    n_gallery: int
    p_at_k_ci: tuple[float, float] | None = None
    map_at_k_ci: tuple[float, float] | None = None
    knn_accuracy_ci: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    chance_accuracy: float = float("nan")
    scores: QueryScores | None = field(default=None, repr=False)
    classifier_accuracy: float | None = None


def size_warnings(k: int, n_relevant: np.ndarray, n_gallery: int, knn: float, chance: float) -> list[str]:
    """Why metrics of a set may mislead, one sentence each (empty list: nothing to say).

    Args:
        k: neighbours asked for.
        n_relevant: (q,) relevant gallery items of each query (itself excluded).
        n_gallery: gallery size.
        knn: kNN accuracy; chance: accuracy of always answering the gallery's commonest label.

    Warns when k >= n_gallery - 1 (every candidate is a neighbour), when some queries have
    fewer than k relevant items (a class with fewer than k + 1 members: P@k cannot reach 1),
    when there are fewer than `MIN_QUERIES` queries, and when kNN accuracy is below chance.
    """
    out = []
    q = len(n_relevant)
    if q and k >= n_gallery - 1:
        out.append(f"k={k} >= gallery size - 1 ({n_gallery - 1}): every gallery item is a neighbour, "
                   "so the metrics barely depend on the embedding")
    short = np.asarray(n_relevant) < k
    if q and short.any():
        best = float(np.minimum(n_relevant, k).mean() / k)
        out.append(f"{int(short.sum())} of {q} queries have fewer than k={k} relevant gallery items "
                   f"(classes with fewer than k+1 members): P@k cannot reach 1 (at most {best:.3f} here)")
    if 0 < q < MIN_QUERIES:
        out.append(f"only {q} queries (fewer than {MIN_QUERIES}): the metrics are noisy, read their intervals")
    if q and np.isfinite(knn) and np.isfinite(chance) and knn < chance:
        out.append(f"kNN accuracy {knn:.3f} is below chance ({chance:.3f}, always answering the commonest label)")
    return out


def retrieval_metrics(
    queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
    k: int = 10, query_ids: np.ndarray | None = None, gallery_ids: np.ndarray | None = None,
    linear_probe: bool = True, n_bootstrap: int = 0, seed: int = 0, query_keys: np.ndarray | None = None,
) -> FieldMetrics:
    """All metrics for one label field. Pass ids (e.g. store rows) to enable leave-one-out.

    Args:
        queries: (q, dim), gallery: (g, dim) float32 unit vectors; *_labels: (q,), (g,).
        k: neighbours per query.
        query_ids, gallery_ids: (q,), (g,) ids; equal ids are left out of each other's neighbours.
        linear_probe: also fit the linear probe (`linear_probe_correct`; seconds to minutes).
        n_bootstrap: resamples behind the 95 % intervals of P@k, mAP@k and kNN accuracy
            (`bootstrap_intervals`); 0 (training's validation) skips them.
        seed: seed of the bootstrap and of the probe's folds.
        query_keys: (q,) identities of the queries kept in `FieldMetrics.scores` (default:
            query_ids, else 0..q-1).

    Returns:
        `FieldMetrics`, with `warnings` (`size_warnings`) and the per-query `scores`.
    """
    _check_resamples(n_bootstrap)
    query_labels = np.asarray(query_labels, dtype=object)
    gallery_labels = np.asarray(gallery_labels, dtype=object)
    sims, idx = topk_neighbors(queries, gallery, k, query_ids, gallery_ids)
    rel = relevance(query_labels, gallery_labels, idx)
    per_label = pd.Series(gallery_labels).value_counts()
    n_relevant = per_label.reindex(query_labels).fillna(0).to_numpy(dtype=np.int64)
    if query_ids is not None and gallery_ids is not None:  # the query itself is not relevant
        n_relevant = n_relevant - np.isin(query_ids, gallery_ids).astype(np.int64)
    same_set = (
        query_ids is not None and gallery_ids is not None
        and len(query_ids) == len(gallery_ids) and bool(np.all(np.asarray(query_ids) == np.asarray(gallery_ids)))
    )
    probe = None
    if linear_probe:
        probe = (linear_probe_accuracy(queries, query_labels, seed=seed) if same_set
                 else linear_probe_accuracy(gallery, gallery_labels, queries, query_labels, seed=seed))
    if query_keys is None:
        query_keys = np.arange(len(queries)) if query_ids is None else np.asarray(query_ids)
    correct = knn_correct(query_labels, gallery_labels, idx, sims)
    scores = QueryScores(keys=np.asarray(query_keys, dtype=object),
                         p_at_k=rel.mean(axis=1) if rel.size else np.zeros(len(rel)),
                         map_at_k=average_precision_at_k(rel, n_relevant), knn_accuracy=correct.astype(np.float64))
    knn = float(correct.mean()) if len(correct) else float("nan")
    chance = (float((query_labels == per_label.index[0]).mean()) if len(per_label) and len(query_labels)
              else float("nan"))
    intervals: dict[str, tuple[float, float] | None] = dict.fromkeys(BOOTSTRAPPED)
    if n_bootstrap and len(queries):
        bounds = bootstrap_intervals(scores.matrix(), n_bootstrap, seed)
        intervals = {name: (float(lo), float(hi)) for name, (lo, hi) in zip(BOOTSTRAPPED, bounds, strict=True)}
    return FieldMetrics(
        p_at_k=precision_at_k(rel), map_at_k=map_at_k(rel, n_relevant), r_at_k=recall_at_k(rel),
        knn_accuracy=knn, linear_probe_accuracy=probe, n_queries=len(queries), n_gallery=len(gallery),
        p_at_k_ci=intervals["p_at_k"], map_at_k_ci=intervals["map_at_k"],
        knn_accuracy_ci=intervals["knn_accuracy"],
        warnings=size_warnings(k, n_relevant, len(gallery), knn, chance), chance_accuracy=chance, scores=scores,
    )


def _finite(x: float | None) -> float | None:
    """NaN (no query, one class) becomes None so the report is valid JSON."""
    return None if x is None or not np.isfinite(x) else float(x)


def _interval(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


def _has_label(values: pd.Series) -> np.ndarray:
    """(n,) bool: the value is a label (`labels.is_missing` is False)."""
    return ~is_missing(values)


@dataclass(frozen=True)
class EvaluationReport:
    """Retrieval metrics of a set of vectors per label field (`evaluate_arrays`, `evaluate_store`).

    Attributes:
        fields: per label field, its `FieldMetrics` (fractions in [0, 1]; NaN where
            undefined, e.g. no query; None for a skipped linear probe).
        k: neighbours used for P@k, mAP@k, R@k and kNN accuracy.
        n_queries: works in the query split; query_split / gallery_split: the splits
            (None = all works / the query set); leave_one_out: gallery == queries.
        store, model: the store's folder and model name (`evaluate_store` only).
        n_bootstrap, seed: resamples and seed behind the intervals (0: none).

    `to_dict()` is the JSON document `artenc evaluate` prints (NaN becomes None); per field
    it adds `p_at_k_ci`, `map_at_k_ci`, `knn_accuracy_ci` ([low, high] or None) and `warnings`.
    """

    fields: dict[str, FieldMetrics]
    k: int
    n_queries: int
    query_split: str | None
    gallery_split: str | None
    leave_one_out: bool
    store: str | None = None
    model: str | None = None
    n_bootstrap: int = 0
    seed: int = 0

    def to_dict(self) -> dict:
        doc: dict = {"fields": {}, "k": self.k}
        for name, m in self.fields.items():
            doc["fields"][name] = {
                "p_at_k": _finite(m.p_at_k), "map_at_k": _finite(m.map_at_k), "r_at_k": _finite(m.r_at_k),
                "knn_accuracy": _finite(m.knn_accuracy), "linear_probe_accuracy": _finite(m.linear_probe_accuracy),
                "n_queries": m.n_queries, "n_gallery": m.n_gallery,
                "p_at_k_ci": _interval(m.p_at_k_ci), "map_at_k_ci": _interval(m.map_at_k_ci),
                "knn_accuracy_ci": _interval(m.knn_accuracy_ci), "warnings": list(m.warnings),
            }
            if m.classifier_accuracy is not None:  # only encoders trained with a classifier have one
                doc["fields"][name]["classifier_accuracy"] = _finite(m.classifier_accuracy)
        doc["n_queries"] = self.n_queries
        doc["query_split"], doc["gallery_split"] = self.query_split, self.gallery_split
        doc["leave_one_out"] = self.leave_one_out
        if self.store is not None:
            doc["store"], doc["model"] = self.store, self.model
        doc["bootstrap"] = {"resamples": self.n_bootstrap, "seed": self.seed, "confidence": CONFIDENCE}
        return doc


def evaluate_arrays(
    vectors: np.ndarray, items: pd.DataFrame, fields: Sequence[str], k: int = 10,
    query_split: str | None = None, gallery_split: str | None = None, split_column: str = "split",
    linear_probe: bool = True, n_bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0, log_warnings: bool = True,
) -> EvaluationReport:
    """Evaluate embeddings `vectors` (n, dim) float32 unit rows aligned with `items` (label columns).

    Queries: rows with `split_column == query_split` (all rows if None); gallery: rows with
    `split_column == gallery_split` (the query set if None, i.e. leave-one-out). Each field
    gets 95 % bootstrap intervals from `n_bootstrap` resamples of its queries (0: none; seeded
    by `seed`) and warnings (`size_warnings`), also logged unless `log_warnings` is False. Queries are identified by
    `items["path"]` when present (`compare_reports` pairs them by it), else by row.
    """
    if len(vectors) != len(items):
        raise ValueError(f"{len(vectors)} vectors but {len(items)} items")
    for col in list(fields) + ([split_column] if query_split or gallery_split else []):
        if col not in items.columns:
            raise KeyError(col)
    _check_resamples(n_bootstrap)
    rows = np.arange(len(items))
    keys = items["path"].astype(str).to_numpy(dtype=object) if "path" in items.columns else rows

    def select(split: str | None) -> np.ndarray:
        if split is None:
            return np.ones(len(items), dtype=bool)
        return (items[split_column].astype(str) == split).to_numpy()

    q_mask = select(query_split)
    g_mask = select(gallery_split) if gallery_split is not None else q_mask
    metrics = {}
    for name in fields:
        labelled = _has_label(items[name])
        qm, gm = q_mask & labelled, g_mask & labelled
        labels = items[name].astype(str).to_numpy(dtype=object)
        metrics[name] = retrieval_metrics(vectors[qm], labels[qm], vectors[gm], labels[gm], k, rows[qm], rows[gm],
                                          linear_probe, n_bootstrap=n_bootstrap, seed=seed, query_keys=keys[qm])
    report = EvaluationReport(metrics, k, int(q_mask.sum()), query_split, gallery_split,
                              gallery_split is None or gallery_split == query_split, n_bootstrap=n_bootstrap, seed=seed)
    if log_warnings:
        _log_warnings(report)
    return report


def _log_warnings(report: EvaluationReport) -> None:
    """Log each field's warnings (`size_warnings`), prefixed by the store when there is one."""
    where = f"{report.store}, " if report.store else ""
    for name, m in report.fields.items():
        for message in m.warnings:
            log.warning("%s%s: %s", where, name, message)


def evaluate_store(store, fields: Sequence[str] | None = None, **kwargs) -> EvaluationReport:
    """`evaluate_arrays` on an opened `artenc.store.Store`; fields default to its label columns.

    Raises ParameterError for an unknown field or split, UsageError for a store without labels.
    """
    items = store.items
    kwargs.pop("log_warnings", None)  # logged here, with the store's name
    split_column = kwargs.get("split_column", "split")
    fields = choose_fields(store.label_columns, fields, split_column, where=str(store.root))
    for key in ("query_split", "gallery_split"):
        split = kwargs.get(key)
        if split is not None:
            if split_column not in items.columns:
                raise ParameterError("split_column", f"{split_column!r} is not a label column of {store.root} "
                                     f"(needed for {key})")
            if not (items[split_column].astype(str) == split).any():
                raise ParameterError(key, f"{split!r}: no item has {split_column}={split!r} in {store.root}")
    report = evaluate_arrays(store.vectors, items, fields, **kwargs, log_warnings=False)
    report = dataclasses.replace(report, store=str(store.root), model=store.meta.get("model"))
    report = _with_classifier_accuracy(report, store, kwargs.get("query_split"), split_column)
    _log_warnings(report)
    return report


def classifier_accuracy(probabilities: np.ndarray, classes: Sequence[str], labels: np.ndarray) -> float:
    """Share of rows whose most probable class is their label: probabilities (n, C), classes
    (C,) names, labels (n,) strings (a label the classifier does not know counts as wrong);
    NaN with no row."""
    if len(labels) == 0:
        return float("nan")
    predicted = np.asarray(classes, dtype=object)[np.asarray(probabilities).argmax(axis=1)]
    return float((predicted == np.asarray(labels, dtype=object)).mean())


def _with_classifier_accuracy(report: EvaluationReport, store, query_split: str | None,
                              split_column: str) -> EvaluationReport:
    """Add the accuracy of the store encoder's classifier on the queries to its field."""
    model = str(store.meta.get("model") or "")
    if not model.endswith((".pt", ".pth")):
        return report
    from artenc.backbones.exported import model_classifier  # torch: only for exported encoders

    classifier = model_classifier(model)
    if classifier is None or classifier.field not in report.fields:
        return report
    items = store.items
    rows = _has_label(items[classifier.field])
    if query_split is not None:
        rows &= (items[split_column].astype(str) == query_split).to_numpy()
    labels = items[classifier.field].astype(str).to_numpy(dtype=object)[rows]
    accuracy = classifier_accuracy(classifier.probabilities(store.vectors[rows]), classifier.classes, labels)
    fields = dict(report.fields)
    fields[classifier.field] = dataclasses.replace(fields[classifier.field], classifier_accuracy=accuracy)
    return dataclasses.replace(report, fields=fields)


@dataclass(frozen=True)
class MetricDifference:
    """One metric of encoder B minus encoder A on the same queries (`compare_reports`).

    Attributes:
        difference: mean per-query difference (B - A), in metric units (fractions).
        ci: its 95 % percentile bootstrap interval (low, high).
        p_value: two-sided paired-bootstrap p-value of "no difference" (`paired_bootstrap`).
        significant: p_value < `SIGNIFICANCE`.
    """

    difference: float
    ci: tuple[float, float]
    p_value: float
    significant: bool

    def to_dict(self) -> dict:
        return {"difference": self.difference, "ci": list(self.ci), "p_value": self.p_value,
                "significant": self.significant}


@dataclass(frozen=True)
class FieldComparison:
    """A store against the first (baseline) store on one label field, over the queries both have.

    Attributes:
        store, baseline: the two stores' folders (None for arrays).
        field: the label field.
        n_paired: queries found in both (matched by path); metrics: per metric of
        `BOOTSTRAPPED`, its `MetricDifference` (empty when fewer than 2 queries pair up).
    """

    store: str | None
    baseline: str | None
    field: str
    n_paired: int
    metrics: dict[str, MetricDifference]

    def to_dict(self) -> dict:
        return {"store": self.store, "baseline": self.baseline, "field": self.field, "n_paired": self.n_paired,
                "metrics": {name: d.to_dict() for name, d in self.metrics.items()}}


def compare_reports(reports: Sequence[EvaluationReport], n_bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                    alpha: float = SIGNIFICANCE) -> list[FieldComparison]:
    """Which differences between encoders are real: each report after the first against the first.

    Args:
        reports: evaluations of the same queries by different encoders (e.g. `evaluate_store`
            of several stores with the same fields, k and splits).
        n_bootstrap, seed: the paired bootstrap (`paired_bootstrap`), >= 1 resamples.
        alpha: significance level of the two-sided test.

    Returns:
        one `FieldComparison` per (later report, field both evaluated), in order. Queries are
        paired by their keys (store paths); queries only one store has are left out.

    Raises:
        ParameterError: n_bootstrap < 1.
    """
    out: list[FieldComparison] = []
    if not reports:
        return out
    base = reports[0]
    for report in reports[1:]:
        for name, m in report.fields.items():
            a = base.fields.get(name)
            if a is None or a.scores is None or m.scores is None:
                continue
            shared, rows_a, rows_b = np.intersect1d(a.scores.keys.astype(str), m.scores.keys.astype(str),
                                                    assume_unique=False, return_indices=True)
            differences: dict[str, MetricDifference] = {}
            if len(shared) >= 2:
                diffs = m.scores.matrix(rows_b) - a.scores.matrix(rows_a)
                intervals, p_values = paired_bootstrap(diffs, n_bootstrap, seed)
                for j, metric in enumerate(BOOTSTRAPPED):
                    differences[metric] = MetricDifference(
                        float(diffs[:, j].mean()), (float(intervals[j, 0]), float(intervals[j, 1])),
                        float(p_values[j]), bool(p_values[j] < alpha))
            out.append(FieldComparison(report.store, base.store, name, len(shared), differences))
    return out
