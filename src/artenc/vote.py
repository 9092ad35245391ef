"""The kNN vote: which label the nearest neighbours of a query agree on.

One rule, used by evaluation (kNN accuracy), `artenc predict` and the web page: every
neighbour with a label casts one vote; the label with the most votes wins, ties go to
the label with the larger summed cosine similarity, then to the label seen first. The
winner's confidence is its share of the votes. Missing labels (None, NaN, "") do not vote.
"""

from __future__ import annotations

from collections.abc import Sequence

from artenc.labels import is_missing


def knn_vote(labels: Sequence, sims: Sequence[float]) -> tuple[object, float, dict]:
    """Majority label among neighbours (ties: larger summed similarity).

    Args:
        labels: (k,) the neighbours' labels (hashable), nearest first.
        sims: (k,) their cosine similarities to the query.

    Returns:
        (label, confidence = its share of the votes in [0, 1], {label: votes}); with no
        neighbours (None, 0.0, {}).

    Raises:
        ValueError: `labels` and `sims` differ in length.

    Source: the k-nearest-neighbour majority rule (Cover & Hart 1967), with a summed
    similarity tie-break.
    """
    counts: dict = {}
    weight: dict = {}
    for label, s in zip(labels, sims, strict=True):
        counts[label] = counts.get(label, 0) + 1
        weight[label] = weight.get(label, 0.0) + float(s)
    if not counts:
        return None, 0.0, {}
    best = max(counts, key=lambda lab: (counts[lab], weight[lab]))
    return best, counts[best] / sum(counts.values()), counts


def field_vote(values: Sequence, sims: Sequence[float]) -> dict:
    """One label field's vote as a JSON-ready dict: `knn_vote` of the neighbours' values.

    Args:
        values: (k,) the neighbours' raw values of one label field; missing ones
            (`labels.is_missing`: None, NaN, blank) do not vote, the others vote as strings.
        sims: (k,) their cosine similarities to the query.

    Returns:
        {"label": str or None, "confidence": share of the votes rounded to 4 decimals,
        "votes": {label: count}, most votes first}.
    """
    pairs = [(str(v), float(s)) for v, s, gone in zip(values, sims, is_missing(values), strict=True) if not gone]
    label, confidence, votes = knn_vote([p[0] for p in pairs], [p[1] for p in pairs])
    return {"label": label, "confidence": round(confidence, 4),
            "votes": dict(sorted(votes.items(), key=lambda kv: -kv[1]))}
