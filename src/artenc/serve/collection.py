"""Collection views for the page: near-duplicate groups and k-medoids clusters.

Both cost seconds on a large store, so each is computed once, in a background thread,
on first request (`Background`); until then the API answers "computing" and the page
polls. Results hold item ids (rows of the store), never paths.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from artenc.errors import ArtencError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Status(Generic[T]):
    state: str  # "computing" | "ready" | "failed"
    value: T | None = None
    message: str = ""


class Background(Generic[T]):
    """`poll()` starts `compute` in a thread the first time, then reports its state."""

    def __init__(self, name: str, compute: Callable[[], T]) -> None:
        self.name = name
        self._compute = compute
        self._lock = threading.Lock()
        self._status: Status[T] = Status("computing", message=f"computing {name}…")
        self._thread: threading.Thread | None = None

    def poll(self) -> Status[T]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"artenc-{self.name}", daemon=True)
                self._thread.start()
            return self._status

    def wait(self, timeout: float | None = None) -> Status[T]:
        """Start if needed and block until done (or `timeout` seconds)."""
        self.poll()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.poll()

    def _run(self) -> None:
        try:
            status = Status("ready", self._compute())
        except ArtencError as exc:
            status = Status("failed", message=f"cannot compute {self.name}: {exc}")
        except Exception:  # noqa: BLE001 - logged here; the client gets a message, not a trace
            log.exception("computing %s failed", self.name)
            status = Status("failed", message=f"cannot compute {self.name}: internal error (see the server log)")
        with self._lock:
            self._status = status


@dataclass(frozen=True)
class DuplicateGroup:
    keep: int
    duplicates: list[tuple[int, float]]  # (item id, cosine similarity to the keeper)


def duplicate_groups(store, threshold: float, *, verify: bool, min_inliers: int) -> list[DuplicateGroup]:
    """Near-duplicate cliques (`artenc.dedup.find_duplicates`, the same call as `artenc dedup`)."""
    from artenc.dedup import find_duplicates

    doc = find_duplicates(store, threshold, verify=verify, min_inliers=min_inliers)
    return [DuplicateGroup(store.index_of([g["keep"]])[0],
                           [(i, d["similarity"]) for i, d in
                            zip(store.index_of([d["path"] for d in g["duplicates"]]), g["duplicates"], strict=True)])
            for g in doc["groups"]]


@dataclass(frozen=True)
class Cluster:
    medoid: int
    members: np.ndarray  # item ids, nearest to the medoid first (the medoid itself first)


@dataclass(frozen=True)
class ClusterSet:
    k: int
    rule: str
    clusters: list[Cluster]  # largest first


def cluster_collection(vectors: np.ndarray, k: int | str, sample_size: int) -> ClusterSet:
    """k-medoids clusters (`artenc.cluster`); members ordered by distance to their medoid."""
    from artenc.cluster import cluster_vectors

    result = cluster_vectors(vectors, k, sample_size=min(sample_size, len(vectors)))
    clusters = []
    for c, medoid in enumerate(result.medoids):
        members = np.flatnonzero(result.labels == c)
        members = members[np.argsort(result.distances[members], kind="stable")]
        members = np.concatenate([[medoid], members[members != medoid]]).astype(np.int64)
        clusters.append(Cluster(int(medoid), members))
    clusters.sort(key=lambda cl: -len(cl.members))
    return ClusterSet(result.k, result.rule, clusters)
