"""Collection views for the page: near-duplicate groups, k-medoids clusters and the audit.

Both cost seconds on a large store, so each is computed once, in a background thread,
on first request (`Background`); until then the API answers "computing" and the page
polls. Both are the library's own results (`artenc.Collection`); the API renders their
item ids (rows of the store), never paths.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from artenc.errors import ArtencError

if TYPE_CHECKING:
    from artenc.audit import AuditReport
    from artenc.cluster import ClusterReport
    from artenc.collection import Collection
    from artenc.dedup import DuplicateReport

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


def duplicate_groups(collection: Collection, threshold: float | None, *, verify: bool,
                     min_inliers: int) -> DuplicateReport:
    """Near-duplicate groups of the page: `Collection.duplicates`, the same call as `artenc dedup`,
    so both show the same groups for the same store with the same settings."""
    return collection.duplicates(threshold, verify=verify, min_inliers=min_inliers)


def cluster_collection(collection: Collection, k: int | str, sample_size: int) -> ClusterReport:
    """k-medoids clusters of the page (`Collection.clusters`), at most `sample_size` works in
    the distance matrix; `ClusterReport.members(c)` lists a cluster nearest-first."""
    return collection.clusters(k, sample_size=min(sample_size, len(collection)))


def audit_collection(collection: Collection) -> AuditReport:
    """The audit of the page (`Collection.audit`, the same call as `artenc audit`): label issues
    per field, outliers, duplicate links (identical files, cosine >= 0.9, no SIFT)."""
    return collection.audit()
