"""Retrieval metrics on embeddings: P@k, mAP@k, R@k, kNN accuracy, linear-probe accuracy.

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
  queries; when queries and gallery are the same set, 5-fold stratified cross-validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from artenc.errors import ParameterError
from artenc.labels import choose_fields, is_missing
from artenc.search import top_k
from artenc.vote import knn_vote


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
    return float(rel.mean()) if rel.size else float("nan")


def recall_at_k(rel: np.ndarray) -> float:
    return float(rel.any(axis=1).mean()) if rel.size else float("nan")


def map_at_k(rel: np.ndarray, n_relevant: np.ndarray) -> float:
    """mean AP@k with denominator min(k, R); queries with R = 0 count as 0."""
    if not rel.size:
        return float("nan")
    k = rel.shape[1]
    hits = np.cumsum(rel, axis=1)
    precision_i = hits / np.arange(1, k + 1)
    denom = np.minimum(k, np.asarray(n_relevant))
    ap = np.where(denom > 0, (precision_i * rel).sum(axis=1) / np.maximum(denom, 1), 0.0)
    return float(ap.mean())


def knn_accuracy(query_labels: np.ndarray, gallery_labels: np.ndarray, idx: np.ndarray, sims: np.ndarray) -> float:
    if not len(idx):
        return float("nan")
    gallery_labels = np.asarray(gallery_labels, dtype=object)
    correct = 0
    for q, (row, srow) in enumerate(zip(idx, sims, strict=True)):
        ok = row >= 0
        pred, _, _ = knn_vote(gallery_labels[row[ok]], srow[ok])
        correct += pred == query_labels[q]
    return float(correct) / len(idx)


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray | None = None,
    test_y: np.ndarray | None = None, seed: int = 0,
) -> float:
    """Logistic-regression accuracy; with no test set, 5-fold stratified cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    train_y = np.asarray(train_y).astype(str)
    if len(np.unique(train_y)) < 2:
        return float("nan")
    clf = LogisticRegression(max_iter=2000, C=1.0)
    if test_x is None:
        folds = min(5, int(pd.Series(train_y).value_counts().min()))
        if folds < 2:
            return float("nan")
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return float(cross_val_score(clf, train_x, train_y, cv=cv).mean())
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == np.asarray(test_y).astype(str)).mean())


@dataclass
class FieldMetrics:
    p_at_k: float
    map_at_k: float
    r_at_k: float
    knn_accuracy: float
    linear_probe_accuracy: float | None
    n_queries: int
    n_gallery: int


def retrieval_metrics(
    queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
    k: int = 10, query_ids: np.ndarray | None = None, gallery_ids: np.ndarray | None = None,
    linear_probe: bool = True,
) -> FieldMetrics:
    """All metrics for one label field. Pass ids (e.g. store rows) to enable leave-one-out."""
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
        probe = (linear_probe_accuracy(queries, query_labels) if same_set
                 else linear_probe_accuracy(gallery, gallery_labels, queries, query_labels))
    return FieldMetrics(
        p_at_k=precision_at_k(rel), map_at_k=map_at_k(rel, n_relevant), r_at_k=recall_at_k(rel),
        knn_accuracy=knn_accuracy(query_labels, gallery_labels, idx, sims),
        linear_probe_accuracy=probe, n_queries=len(queries), n_gallery=len(gallery),
    )


def _finite(x: float | None) -> float | None:
    """NaN (no query, one class) becomes None so the report is valid JSON."""
    return None if x is None or not np.isfinite(x) else float(x)


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

    `to_dict()` is the JSON document `artenc evaluate` prints (NaN becomes None).
    """

    fields: dict[str, FieldMetrics]
    k: int
    n_queries: int
    query_split: str | None
    gallery_split: str | None
    leave_one_out: bool
    store: str | None = None
    model: str | None = None

    def to_dict(self) -> dict:
        doc: dict = {"fields": {}, "k": self.k}
        for field, m in self.fields.items():
            doc["fields"][field] = {
                "p_at_k": _finite(m.p_at_k), "map_at_k": _finite(m.map_at_k), "r_at_k": _finite(m.r_at_k),
                "knn_accuracy": _finite(m.knn_accuracy), "linear_probe_accuracy": _finite(m.linear_probe_accuracy),
                "n_queries": m.n_queries, "n_gallery": m.n_gallery,
            }
        doc["n_queries"] = self.n_queries
        doc["query_split"], doc["gallery_split"] = self.query_split, self.gallery_split
        doc["leave_one_out"] = self.leave_one_out
        if self.store is not None:
            doc["store"], doc["model"] = self.store, self.model
        return doc


def evaluate_arrays(
    vectors: np.ndarray, items: pd.DataFrame, fields: Sequence[str], k: int = 10,
    query_split: str | None = None, gallery_split: str | None = None, split_column: str = "split",
    linear_probe: bool = True,
) -> EvaluationReport:
    """Evaluate embeddings `vectors` (n, dim) float32 unit rows aligned with `items` (label columns).

    Queries: rows with `split_column == query_split` (all rows if None); gallery: rows with
    `split_column == gallery_split` (the query set if None, i.e. leave-one-out).
    """
    if len(vectors) != len(items):
        raise ValueError(f"{len(vectors)} vectors but {len(items)} items")
    for col in list(fields) + ([split_column] if query_split or gallery_split else []):
        if col not in items.columns:
            raise KeyError(col)
    rows = np.arange(len(items))

    def select(split: str | None) -> np.ndarray:
        if split is None:
            return np.ones(len(items), dtype=bool)
        return (items[split_column].astype(str) == split).to_numpy()

    q_mask = select(query_split)
    g_mask = select(gallery_split) if gallery_split is not None else q_mask
    metrics = {}
    for field in fields:
        labelled = _has_label(items[field])
        qm, gm = q_mask & labelled, g_mask & labelled
        labels = items[field].astype(str).to_numpy(dtype=object)
        metrics[field] = retrieval_metrics(vectors[qm], labels[qm], vectors[gm], labels[gm], k, rows[qm], rows[gm],
                                           linear_probe)
    return EvaluationReport(metrics, k, int(q_mask.sum()), query_split, gallery_split,
                            gallery_split is None or gallery_split == query_split)


def evaluate_store(store, fields: Sequence[str] | None = None, **kwargs) -> EvaluationReport:
    """`evaluate_arrays` on an opened `artenc.store.Store`; fields default to its label columns.

    Raises ParameterError for an unknown field or split, UsageError for a store without labels.
    """
    items = store.items
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
    report = evaluate_arrays(store.vectors, items, fields, **kwargs)
    return dataclasses.replace(report, store=str(store.root), model=store.meta.get("model"))
