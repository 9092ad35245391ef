"""What `artenc serve` loads once per process: store, index, encoder, thumbnails, settings.

Endpoints receive the one `ServeState` through `Depends(get_state)` (see `deps`), never
a global. Collection views that cost seconds on a large store (near-duplicate groups,
clusters, the audit) are computed on first request and kept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial

import numpy as np

from artenc.collection import Collection
from artenc.defaults import (
    MAX_K,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MIN_INLIERS,
    SERVE_CLUSTER_SAMPLE,
    VERIFY_DUPLICATES,
    duplicate_threshold,
)
from artenc.errors import ParameterError
from artenc.index import VectorIndex, index_for_store
from artenc.labels import label_fields
from artenc.neighbors import labels_of
from artenc.predict import classifier_vote, store_classifier
from artenc.runtime import Encoder, encoder_for_store
from artenc.serve.collection import (
    Background,
    audit_collection,
    cluster_collection,
    duplicate_groups,
)
from artenc.serve.engine import QueryEngine
from artenc.serve.thumbnails import ThumbnailCache
from artenc.store import Store, thumbnail_cache_dir
from artenc.vote import field_vote

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Limits and options of one server (the CLI flags of `artenc serve`).

    Defaults come from `artenc.defaults`, so the page finds the same near-duplicate groups
    as `artenc dedup` (verified, same threshold and inliers) and decodes the same images as
    `artenc embed` (same pixel limit). `max_upload_bytes` is the page's own limit, on the
    size of a request body, not on pixels.
    """

    max_upload_bytes: int = MAX_UPLOAD_BYTES  # larger uploads are answered 413 (bytes)
    max_pixels: int = MAX_PIXELS  # decompression-bomb guard for uploads (width * height)
    max_k: int = MAX_K
    thumbnail_size: int = 256
    thumbnail_dir: str | None = None  # default: artenc.store.thumbnail_cache_dir()
    duplicate_threshold: float | None = None  # cosine; None: artenc.defaults.duplicate_threshold(verify)
    verify_duplicates: bool = VERIFY_DUPLICATES  # geometric verification of near-duplicates
    min_inliers: int = MIN_INLIERS  # RANSAC inliers for a verified duplicate
    clusters: str = "auto"  # k for k-medoids, or "auto" (see artenc.cluster)
    cluster_sample: int = SERVE_CLUSTER_SAMPLE  # works clustered (the rest assigned to the nearest medoid)
    workers: int = os.cpu_count() or 1  # queries running at once (the others wait their turn)
    threads: int = 1  # encoder and FAISS threads per query
    # Host header values answered besides the loopback names (limits.LOOPBACK_HOSTS); others get
    # 400. The CLI adds the --host interface. Starlette patterns: "*.example.org", "*" for any.
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.duplicate_threshold is None:  # frozen: resolved once here
            object.__setattr__(self, "duplicate_threshold", duplicate_threshold(self.verify_duplicates))
        if self.max_upload_bytes < 1024:
            raise ValueError(f"the upload limit must be at least 1 KiB, got {self.max_upload_bytes} bytes")
        if self.max_k < 1:
            raise ValueError(f"max_k must be >= 1, got {self.max_k}")
        if self.clusters != "auto" and not (self.clusters.isdigit() and int(self.clusters) >= 1):
            raise ValueError(f"clusters must be a number >= 1 or 'auto', got {self.clusters!r}")
        if self.workers < 1 or self.threads < 1:
            raise ValueError(f"workers and threads must be >= 1, got {self.workers} and {self.threads}")
        if isinstance(self.allowed_hosts, str) or not all(map(_host_pattern, self.allowed_hosts)):
            raise ParameterError("allowed_hosts", "must be host names or patterns like '*.example.org' or '*', "
                                 f"got {self.allowed_hosts!r}")
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        if self.cluster_sample < 2:
            raise ValueError(f"cluster_sample must be >= 2, got {self.cluster_sample}")


def _host_pattern(name: object) -> bool:
    """A host name or a Starlette TrustedHostMiddleware pattern ("*" or "*.example.org")."""
    return isinstance(name, str) and (name == "*" or (bool(name.removeprefix("*.")) and
                                                      "*" not in name.removeprefix("*.")))


def query_encoder(meta: dict, threads: int) -> Encoder:
    """The store's encoder on the CPU with `threads` threads per query."""
    return encoder_for_store(meta, device="cpu", threads=threads)


def predicted_fields(store: Store) -> list[str]:
    """Label fields to predict (`labels.label_fields`: all but the split column), maybe none."""
    return label_fields(store.label_columns)


class ServeState:
    """The loaded store and everything derived from it; shared by all requests (read-only)."""

    def __init__(self, store: Store, settings: ServeSettings, *, encoder: Encoder | None = None,
                 index: VectorIndex | None = None) -> None:
        self.store = store
        self.settings = settings
        # only the columns the pages show, kept as Arrow-backed arrays (no Python string per
        # work: ~130 MB at a million works, where object arrays and the whole `items` frame
        # took ~0.9 GB); `relpaths[i]` etc. give str
        items = store.item_columns(["relpath", "path", "sha256", "width", "height"])
        self.count = len(items)
        self.relpaths = items["relpath"].array
        self.paths = items["path"].array
        self.sha256 = items["sha256"].array
        self.sizes = items[["width", "height"]].to_numpy(dtype=np.int64)
        del items
        self.label_columns = list(store.label_columns)
        # one shared empty dict per work of an unlabelled store (read-only, as every view here)
        self.labels = labels_of(store, np.arange(self.count)) if self.label_columns else [{}] * self.count
        self.predicted_fields = predicted_fields(store)
        self.classifier = store_classifier(store)  # loss=ce encoders: its probabilities predict its field
        self.encoder = encoder or query_encoder(store.meta, settings.threads)
        self.index = index or index_for_store(store)
        self.collection = Collection(store, encoder=self.encoder, index=self.index)
        size = self.encoder.preprocess.size
        self.encoder.encode(np.zeros((1, 3, size, size), np.uint8))  # warm-up: the first query is not slower
        self.engine = QueryEngine(self.encoder, self.index, workers=settings.workers, threads=settings.threads,
                                  max_pixels=settings.max_pixels)
        thumbs = settings.thumbnail_dir or thumbnail_cache_dir()
        self.thumbnails = ThumbnailCache(thumbs, settings.thumbnail_size, max_pixels=settings.max_pixels)
        self.duplicates = Background("near-duplicate groups", partial(
            duplicate_groups, self.collection, settings.duplicate_threshold, verify=settings.verify_duplicates,
            min_inliers=settings.min_inliers))
        self.clusters = Background(
            "clusters", partial(cluster_collection, self.collection, settings.clusters, settings.cluster_sample))
        self.audit = Background("the audit", partial(audit_collection, self.collection))
        log.info("serving %s: %d works, %s index, %s on %s", store.root, self.count, self.index.kind,
                 self.encoder.signature.model, self.encoder.runtime)

    @classmethod
    def open(cls, store_path: str, settings: ServeSettings | None = None, **kwargs) -> ServeState:
        """Open the store at `store_path` (StoreError when it is not one) and load it."""
        return cls(Store.open(store_path), settings or ServeSettings(), **kwargs)

    def close(self) -> None:
        self.engine.close()

    def has_item(self, item_id: int) -> bool:
        return 0 <= item_id < self.count

    def predict(self, ids: np.ndarray, sims: np.ndarray, vector: np.ndarray | None = None) -> dict[str, dict]:
        """Per label field: the neighbours' majority label, its share of votes, all votes.

        Same vote as `artenc predict` (`vote.field_vote`), on the neighbours already
        found, so a request searches once. Fields without any vote are left out. With the
        query `vector` (D,) and an encoder that has a classifier, its field is predicted by the
        classifier's probabilities (`predict.classifier_vote`), as `artenc predict` does.
        """
        out = {}
        for field in self.predicted_fields:
            vote = field_vote([self.labels[i][field] for i in ids], sims)
            if self.classifier is not None and vector is not None and field == self.classifier.field:
                vote = classifier_vote(self.classifier, vector, vote)
            if vote["label"] is not None:
                out[field] = vote
        return out
