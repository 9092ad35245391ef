"""Response models of the JSON API (they document it in FastAPI's OpenAPI page)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    items: int = Field(description="works in the store")
    model: str
    dim: int
    index: str = Field(description="FAISS index kind")
    label_columns: list[str]
    max_upload_bytes: int
    version: str


class Item(BaseModel):
    id: int = Field(description="item id: use it in /api/items/{id} and /api/thumbnail/{id}")
    path: str = Field(description="path relative to the folder that was embedded")
    width: int
    height: int
    labels: dict[str, Any]
    thumbnail_url: str


class Neighbor(Item):
    similarity: float = Field(description="cosine similarity to the query, in [-1, 1]")


class Prediction(BaseModel):
    label: Any
    confidence: float = Field(description="share of the neighbours' votes, or the classifier's probability")
    votes: dict[str, int]
    probabilities: dict[str, float] | None = Field(
        None, description="encoders trained with a classifier (loss=ce): its probability of each class, "
                          "which then picks the label (absent otherwise)")
    method: str | None = Field(None, description="'classifier' when the classifier predicted (absent: kNN vote)")


class SearchResult(BaseModel):
    neighbors: list[Neighbor]
    predicted: dict[str, Prediction] = Field(
        description="per label column: majority vote of the neighbours that have the label")
    seconds: float = Field(description="server time for decode, encode and search")
    radius: float | None = Field(None, description="with ?radius=: the cosine similarity every neighbour reaches "
                                                   "(the key is absent without it)")
    within: int | None = Field(None, description="with ?radius=: how many works reach it; at most k are listed, "
                                                 "the most similar (absent without it)")


class Duplicate(Item):
    similarity: float = Field(description="cosine similarity to the keeper")


class DuplicateGroup(BaseModel):
    keep: Item
    duplicates: list[Duplicate]


class Background(BaseModel):
    state: str = Field(description="computing | ready | failed: computed once, on first request")
    message: str = ""


class DuplicateGroups(Background):
    threshold: float
    verified: bool = Field(description="true: confirmed by SIFT/RANSAC like `artenc dedup`; false: embedding only")
    total: int = Field(description="number of groups")
    groups: list[DuplicateGroup]


class Cluster(BaseModel):
    id: int = Field(description="cluster number, largest cluster first")
    size: int
    medoid: Item
    members: list[Item] = Field(description="members nearest to the medoid first (the medoid first)")


class Clusters(Background):
    k: int | None = None
    rule: str = Field("", description="how k was chosen")
    clusters: list[Cluster] = []


class AuditNeighbor(Item):
    similarity: float = Field(description="cosine similarity to the audited work")


class LabelIssue(BaseModel):
    item: Item
    rank: int = Field(description="1 = the label most likely wrong")
    given: str = Field(description="the label in the store")
    suggested: str = Field(description="the most probable label (out-of-sample probe + kNN vote)")
    label_quality: float = Field(description="probability of the given label, in [0, 1] (cleanlab self-confidence)")
    is_issue: bool = Field(description="flagged by confident learning (cleanlab); else the suggested label differs")
    neighbors: list[AuditNeighbor] = Field(description="nearest labelled works, most similar first")


class FieldIssues(BaseModel):
    checked: int = Field(description="works whose label was checked")
    issues: int = Field(description="works flagged by confident learning")
    out_of_sample_accuracy: float | None = None
    notes: list[str] = []
    worst: list[LabelIssue] = Field(description="suspect labels (flagged, or another label suggested), worst first")


class AuditOutlier(BaseModel):
    item: Item
    rank: int = Field(description="1 = the most isolated work")
    score: float = Field(description="mean cosine distance to the k nearest other works")
    z: float = Field(description="robust z-score of the score (median, MAD)")
    duplicates: list[int] = Field(description="ids of works it is a duplicate pair with (identical or cosine >= 0.9)")


class Audit(Background):
    k: int | None = None
    fields: dict[str, FieldIssues] = {}
    outliers: list[AuditOutlier] = []
    duplicate_pairs: int = 0
    notes: list[str] = []
