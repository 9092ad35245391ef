"""kNN label prediction: which style / school / period a work is closest to in a store.

Each query's k nearest stored works vote on every label field (missing labels do not
vote); the winner's share of the votes is its confidence (ties: larger summed
similarity). A query that is itself in the store is left out of its own neighbours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from artenc.errors import UsageError
from artenc.evaluate import knn_vote, topk_neighbors
from artenc.labels import SPLIT_COLUMN, choose_fields, is_missing
from artenc.store import Store


def label_fields(store: Store, fields: Sequence[str] | None, split_column: str = SPLIT_COLUMN) -> list[str]:
    """Fields to predict: the ones asked for (checked), else every label column but the split
    (`labels.choose_fields` on the store's label columns; ParameterError / UsageError)."""
    return choose_fields(store.label_columns, fields, split_column, where=str(store.root))


def field_vote(values: Sequence, sims: Sequence[float]) -> dict:
    """One label field's vote: label, confidence, votes (most first); missing labels
    (`labels.is_missing`: None, NaN, blank) do not vote, and with no votes the label is None."""
    pairs = [(str(v), float(s)) for v, s, gone in zip(values, sims, is_missing(values), strict=True) if not gone]
    label, confidence, votes = knn_vote([p[0] for p in pairs], [p[1] for p in pairs])
    return {"label": label, "confidence": round(confidence, 4),
            "votes": dict(sorted(votes.items(), key=lambda kv: -kv[1]))}


def predict_vectors(
    store: Store, vectors: np.ndarray, fields: Sequence[str], k: int = 10,
    query_rows: Sequence[int | None] | None = None,
) -> list[dict]:
    """Predictions for query vectors (n, dim): per field label/confidence/votes, and the neighbours.

    `query_rows[i]`, when not None, is the store row of query i (excluded from its neighbours).
    """
    if k < 1:
        raise UsageError(f"-k must be >= 1, got {k}")
    items = store.items
    rows = np.arange(len(items))
    qids = None if query_rows is None else np.array([-1 if r is None else r for r in query_rows])
    sims, idx = topk_neighbors(vectors, store.vectors, k, qids, rows if qids is not None else None)
    out = []
    for srow, irow in zip(sims, idx, strict=True):
        ok = irow >= 0
        neigh = items.iloc[irow[ok]]
        result: dict = {"fields": {}, "neighbors": []}
        for field in fields:
            result["fields"][field] = field_vote(neigh[field].tolist(), srow[ok])
        for (_, item), s in zip(neigh.iterrows(), srow[ok], strict=True):
            entry = {"path": item["path"], "relpath": item["relpath"], "similarity": round(float(s), 4)}
            entry.update({f: (None if item[f] is None or item[f] != item[f] else str(item[f])) for f in fields})
            result["neighbors"].append(entry)
        out.append(result)
    return out


def predict_images(
    store: Store, images: Sequence[str | os.PathLike], fields: Sequence[str] | None = None, k: int = 10,
    device: str = "auto", runtime: str = "auto",
) -> list[dict]:
    """Embed image files with the store's own encoder and predict their labels."""
    from artenc.embedding import encode_files
    from artenc.runtime import encoder_for_store

    fields = label_fields(store, fields)
    for p in images:
        if not os.path.isfile(p):
            raise UsageError(f"{p}: no such image file")
    encoder = encoder_for_store(store.meta, device=device, runtime=runtime)
    vectors, errors = encode_files(list(images), encoder)
    paths = [os.path.realpath(p) for p in images]
    rows = store.index_of([os.path.abspath(p) for p in images])
    rows = [r if r is not None else store.index_of([rp])[0] for r, rp in zip(rows, paths, strict=True)]
    results = predict_vectors(store, vectors, fields, k, rows)
    for image, error, result in zip(images, errors, results, strict=True):
        result["image"], result["error"] = str(image), error
        if error:
            result["fields"], result["neighbors"] = {}, []
    return [{"image": r.pop("image"), "error": r.pop("error"), **r} for r in results]
