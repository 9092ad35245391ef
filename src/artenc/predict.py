"""kNN label prediction: which style / school / period a work is closest to in a store.

Each query's k nearest stored works vote on every label field (missing labels do not
vote); the winner's share of the votes is its confidence (ties: larger summed
similarity). A query that is itself in the store is left out of its own neighbours.
When the store's encoder was trained with a classifier (`loss=ce`), the field it classifies
is predicted by the classifier's probabilities instead (`classifier_vote`); the kNN votes stay
beside them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from artenc.backbones import EncoderClassifier, model_classifier
from artenc.embedding import encode_files
from artenc.errors import UsageError
from artenc.labels import SPLIT_COLUMN, choose_fields
from artenc.runtime import encoder_for_store
from artenc.search import check_k, top_k
from artenc.store import Store
from artenc.vote import field_vote

if TYPE_CHECKING:
    from artenc.runtime import Encoder


def label_fields(store: Store, fields: Sequence[str] | None, split_column: str = SPLIT_COLUMN) -> list[str]:
    """Fields to predict: the ones asked for (checked), else every label column but the split
    (`labels.choose_fields` on the store's label columns; ParameterError / UsageError)."""
    return choose_fields(store.label_columns, fields, split_column, where=str(store.root))


def store_classifier(store: Store) -> EncoderClassifier | None:
    """The classifier of the encoder that made the store's vectors (an exported `encoder.pt`
    trained with `loss=ce`), None for any other model or an encoder without one."""
    return model_classifier(store.meta.get("model"))


def classifier_vote(classifier: EncoderClassifier, vector: np.ndarray, votes: dict | None = None) -> dict:
    """One field's prediction by the classifier: {"label", "confidence" (its probability, 4
    decimals), "votes" (the kNN votes, `field_vote`'s, kept for comparison), "probabilities"
    ({class: p}, most likely first, 4 decimals), "method": "classifier"}; `vector` (D,) unit."""
    p = classifier.probabilities(np.asarray(vector, dtype=np.float32)[None])[0]
    order = np.argsort(-p, kind="stable")
    best = int(order[0])
    return {"label": classifier.classes[best], "confidence": round(float(p[best]), 4),
            "votes": dict((votes or {}).get("votes", {})),
            "probabilities": {classifier.classes[i]: round(float(p[i]), 4) for i in order},
            "method": "classifier"}


@dataclass(frozen=True)
class PredictedNeighbor:
    """A stored work that voted: its row, path, relpath, cosine similarity and its labels
    of the predicted fields (str, None where missing)."""

    row: int
    path: str
    relpath: str
    similarity: float
    labels: dict

    def to_dict(self) -> dict:
        return {"path": self.path, "relpath": self.relpath, "similarity": round(float(self.similarity), 4),
                **self.labels}


@dataclass(frozen=True)
class Prediction:
    """One query's prediction.

    Attributes:
        fields: per label field, the vote `{"label", "confidence", "votes"}` (`field_vote`):
            the winning label (None without votes), its share of the votes in [0, 1] and
            the similarity-weighted count of each label.
        neighbors: the k nearest stored works, nearest first.
        image / error: the image file asked for and why it could not be used (None when
            it could); None for `predict_vectors`.
        row: the query's store row when it is a stored work (left out of its neighbours).
    """

    fields: dict[str, dict]
    neighbors: list[PredictedNeighbor]
    image: str | None = None
    error: str | None = None
    row: int | None = None

    @property
    def labels(self) -> dict[str, str | None]:
        """The predicted label of every field."""
        return {f: v["label"] for f, v in self.fields.items()}

    def to_dict(self) -> dict:
        doc = {"fields": self.fields, "neighbors": [n.to_dict() for n in self.neighbors]}
        if self.image is None:
            return doc
        return {"image": self.image, "error": self.error, **doc}


@dataclass(frozen=True)
class PredictionReport:
    """`predict_images`' result; `to_dict()` is the JSON document `artenc predict` prints."""

    store: str
    k: int
    predictions: list[Prediction]

    def __iter__(self):
        return iter(self.predictions)

    def __len__(self) -> int:
        return len(self.predictions)

    def __getitem__(self, i: int) -> Prediction:
        return self.predictions[i]

    def to_dict(self) -> dict:
        return {"store": self.store, "k": self.k, "predictions": [p.to_dict() for p in self.predictions]}


def predict_vectors(
    store: Store, vectors: np.ndarray, fields: Sequence[str], k: int = 10,
    query_rows: Sequence[int | None] | None = None,
) -> list[Prediction]:
    """kNN label votes for query vectors (n, dim) float32 unit rows, one `Prediction` each.

    `query_rows[i]`, when not None, is the store row of query i (excluded from its
    neighbours). The field of the store's classifier (`store_classifier`), when asked for, is
    predicted by its probabilities (`classifier_vote`). Raises ParameterError when k < 1.
    """
    k = check_k(k)
    classifier = store_classifier(store)
    items = store.item_columns(["path", "relpath", *fields])  # only the columns shown
    exclude = None if query_rows is None else np.array([-1 if r is None else r for r in query_rows], dtype=np.int64)
    sims, idx = top_k(vectors, store, k, exclude=exclude)  # the store's vectors streamed block by block
    out = []
    for q, (srow, irow) in enumerate(zip(sims, idx, strict=True)):
        ok = irow >= 0
        neigh = items.iloc[irow[ok]]
        votes = {field: field_vote(neigh[field].tolist(), srow[ok]) for field in fields}
        if classifier is not None and classifier.field in votes:
            votes[classifier.field] = classifier_vote(classifier, vectors[q], votes[classifier.field])
        neighbors = [
            PredictedNeighbor(int(r), item["path"], item["relpath"], float(s),
                              {f: (None if item[f] is None or item[f] != item[f] else str(item[f])) for f in fields})
            for r, (_, item), s in zip(irow[ok], neigh.iterrows(), srow[ok], strict=True)
        ]
        out.append(Prediction(votes, neighbors, row=None if exclude is None or exclude[q] < 0 else int(exclude[q])))
    return out


def predict_images(
    store: Store, images: Sequence[str | os.PathLike], fields: Sequence[str] | None = None, k: int = 10,
    device: str = "auto", runtime: str = "auto", encoder: Encoder | None = None,
) -> PredictionReport:
    """Embed image files with the store's own encoder (or `encoder`) and predict their labels.

    An unreadable image gets `error` set and no votes (the others are still predicted).
    Raises UsageError for a missing file, ParameterError for an unknown field or k < 1.
    """
    fields = label_fields(store, fields)
    for p in images:
        if not os.path.isfile(p):
            raise UsageError(f"{p}: no such image file")
    encoder = encoder or encoder_for_store(store.meta, device=device, runtime=runtime)
    vectors, errors = encode_files(list(images), encoder)
    paths = [os.path.realpath(p) for p in images]
    rows = store.index_of([os.path.abspath(p) for p in images])
    rows = [r if r is not None else store.index_of([rp])[0] for r, rp in zip(rows, paths, strict=True)]
    results = predict_vectors(store, vectors, fields, k, rows)
    out = []
    for image, error, r in zip(images, errors, results, strict=True):
        if error:
            r = dataclasses.replace(r, fields={}, neighbors=[])
        out.append(dataclasses.replace(r, image=str(image), error=error))
    return PredictionReport(str(store.root), k, out)
