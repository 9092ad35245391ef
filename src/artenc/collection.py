"""`Collection`: the Python face of one embedding store.

    import artenc

    artenc.embed(["paintings/"], "paintings.store", labels="paintings/labels.csv")
    c = artenc.Collection.open("paintings.store")
    c.similar(c.paths[0], k=5).to_dict()
    c.duplicates().groups            # DuplicateGroup(keep=..., keep_path=..., duplicates=[...])
    c.leaks("split")                 # near-duplicates across train/test
    c.clusters(k="auto").medoid_paths
    c.evaluate(["style"]).fields["style"].p_at_k
    c.predict(["new.jpg"])[0].labels
    c.audit().issues("style")        # works whose label looks wrong, worst first

A `Collection` owns the opened `Store`, a search index built (or loaded) on first use and
the store's own encoder loaded on first use, so repeated queries pay for neither twice.
Each method calls one job function (`artenc.neighbors`, `artenc.dedup`, `artenc.cluster`,
`artenc.evaluate`, `artenc.predict`, `artenc.audit`) and returns its typed result: store rows *and*
paths, with `.to_dict()` giving the JSON document the matching command prints. The CLI,
the web page, the report and the demo all render these results.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from artenc.audit import AuditReport, audit_store
from artenc.cluster import ClusterReport, cluster_store
from artenc.dedup import DuplicateReport, copy_unique, find_duplicates
from artenc.defaults import (
    AUDIT_FOLDS,
    AUDIT_K,
    AUDIT_TOP,
    CLUSTER_K_RANGE,
    CLUSTER_METHOD,
    CLUSTER_SAMPLE,
    EVALUATION_K,
    MIN_INLIERS,
    SIMILAR_K,
    SIMILAR_LIMIT,
    VERIFY_DUPLICATES,
    VERIFY_TOP,
)
from artenc.errors import ParameterError
from artenc.evaluate import EvaluationReport, evaluate_store
from artenc.index import VectorIndex, index_for_store, load_index
from artenc.labels import SPLIT_COLUMN
from artenc.neighbors import PairResult, SimilarResult, pair_similarity, similar
from artenc.quality import QualityReport, QualityThresholds, quality_report
from artenc.store import Store

if TYPE_CHECKING:  # torch (the encoder runtime, embedding, prediction) is imported only to embed
    from pathlib import Path

    from artenc.predict import PredictionReport
    from artenc.runtime import Encoder


class Collection:
    """An embedding store with its index and encoder, loaded lazily and kept.

    Args:
        store: an opened `Store`.
        index_kind: FAISS index kind built once when none is given (`artenc.index.KINDS`);
            None (default): `similar` searches the saved index, or without one the stored
            vectors exactly, block by block; `.index` then builds "auto" (exact up to 50,000
            works, HNSW up to 200,000, IVF-PQ above) unless one is saved.
        device, runtime: where new images are embedded ("auto", "cpu", "cuda";
            "auto", "torch", "onnx", "onnx-int8"; "auto" takes the store's own: onnx-int8 for a
            store of INT8 vectors, see `runtime.encoder_for_store`).
        encoder, index: already loaded ones to share (the web page passes its own).

    Thread safety: the lazy loads are guarded by a lock; the results are read-only.
    """

    def __init__(self, store: Store, *, index_kind: str | None = None, device: str = "auto",
                 runtime: str = "auto", encoder: Encoder | None = None, index: VectorIndex | None = None) -> None:
        self.store = store
        self.index_kind = index_kind
        self.device = device
        self.runtime = runtime
        self._encoder = encoder
        self._index = index
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike, **options) -> Collection:
        """Open the store at `path` (StoreError when it is not one); options as in `Collection`."""
        return cls(Store.open(path), **options)

    def __repr__(self) -> str:
        return f"Collection({str(self.store.root)!r}, {len(self)} works, model {self.store.meta.get('model')!r})"

    # ----- what it holds ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.store)

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def paths(self) -> list[str]:
        """Absolute paths of the works, in store-row order."""
        return self.store.item_columns(["path"])["path"].astype(str).tolist()

    @property
    def items(self) -> pd.DataFrame:
        """One row per work: path, relpath, sha256, size, mtime_ns, width, height, label columns."""
        return self.store.items

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors, aligned with `items` (read-only). Materialises
        them all (n * dim * 4 bytes); `store.vector_blocks()` / `store.vectors_at(rows)` read
        only blocks or rows."""
        return self.store.vectors

    @property
    def label_columns(self) -> list[str]:
        return self.store.label_columns

    @property
    def index(self) -> VectorIndex:
        """The saved index when fresh, else one built in memory on first use (then kept)."""
        with self._lock:
            if self._index is None:
                self._index = index_for_store(self.store, self.index_kind)
            return self._index

    @property
    def encoder(self) -> Encoder:
        """The store's own model (same weights and preprocessing), loaded on first use."""
        from artenc.runtime import encoder_for_store  # torch: only when new images are embedded

        with self._lock:
            if self._encoder is None:
                self._encoder = encoder_for_store(self.store.meta, device=self.device, runtime=self.runtime)
            return self._encoder

    def _search_index(self) -> VectorIndex | None:
        """The index `similar` searches: the one given or built before, else one of
        `index_kind` built once when that was given, else the saved one (kept); None when the
        store has none saved: `similar` then searches the stored vectors exactly, block by
        block (building an index costs far more than a few queries at a million works)."""
        with self._lock:
            if self._index is None:
                self._index = (index_for_store(self.store, self.index_kind) if self.index_kind is not None
                               else load_index(self.store))
            return self._index

    def _load_encoder(self) -> Encoder:
        return self.encoder

    def encode(self, images: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[str | None]]:
        """Embed image files with the store's model: ((n, dim) float32 unit rows, per-file
        error or None; a failed file gets a zero row)."""
        from artenc.embedding import encode_files  # torch: only when new images are embedded

        return encode_files([str(p) for p in images], self.encoder)

    # ----- jobs -------------------------------------------------------------------------
    def similar(self, queries: str | Sequence[str], k: int = SIMILAR_K, *, verify: bool = False,
                verify_top: int = VERIFY_TOP, min_inliers: int = MIN_INLIERS,
                workers: int | None = None, radius: float | None = None,
                limit: int = SIMILAR_LIMIT) -> SimilarResult:
        """The k most similar stored works of each query, or every work within `radius`
        (`artenc.neighbors.similar`).

        Args:
            queries: one or more stored paths (absolute or relative to the embedded folder)
                or new image files (embedded with the store's model; the model is loaded only
                then).
            k: neighbours per query (>= 1).
            verify: re-rank the top `verify_top` candidates by geometric verification, those
                with >= `min_inliers` RANSAC inliers first (SIFT, Lowe 2004; RANSAC homography,
                Fischler & Bolles 1981; OpenCV).
            workers: verification processes (default: one per core).
            radius: a cosine similarity in [-1, 1]: instead of the top k, every stored work with
                cosine >= radius (`artenc.search.similarity_at_least`, so byte-identical copies
                count at 1.0), found by an exact blockwise range search (no index). Not with
                `verify`.
            limit: with a radius, the most works listed per query (the most similar first);
                `QueryNeighbors.within` counts all of them, `.truncated` says when some were cut.

        Returns:
            `SimilarResult`: per query its store row (None for a new file) and `Neighbor`s
            (row, path, cosine similarity in [-1, 1] of the float32 unit vectors, labels,
            inliers), nearest first. Search: the saved index (`artenc index`; `index_kind`: one
            of that kind built once), else exact blockwise inner products over the vectors
            read from the store block by block; radius queries are always exact.

        Raises:
            UsageError: an empty store, or a query that is neither stored nor a readable image.
            ParameterError: k < 1, radius outside [-1, 1] or with verify, limit < 1.
        """
        queries = [queries] if isinstance(queries, (str, os.PathLike)) else [str(q) for q in queries]
        return similar(self.store, [str(q) for q in queries], k, None if radius is not None else self._search_index(),
                       verify=verify, verify_top=verify_top, min_inliers=min_inliers, workers=workers,
                       encoder=self._load_encoder, radius=radius, limit=limit)

    def pair(self, a: str | os.PathLike, b: str | os.PathLike) -> PairResult:
        """Cosine similarity (float in [-1, 1]) of two works, stored paths or new image files
        (`artenc.neighbors.pair_similarity`); `PairResult.rows` holds their store rows (None
        for new files). Raises UsageError for an unusable path."""
        a, b = str(a), str(b)
        return pair_similarity(self.store, a, b, self._load_encoder)

    def duplicates(self, threshold: float | None = None, *, verify: bool = VERIFY_DUPLICATES,
                   min_inliers: int = MIN_INLIERS, top_m: int | None = None, floor: float | None = None,
                   workers: int | None = None, exact: bool | None = None) -> DuplicateReport:
        """Near-duplicate groups, each with a keeper (`artenc.dedup.find_duplicates`).

        Args:
            threshold: cosine similarity of candidate pairs (default
                `artenc.defaults.duplicate_threshold(verify)`: 0.75 verified, 0.9 without).
            verify: keep a candidate only with >= `min_inliers` RANSAC inliers between SIFT
                keypoints (Lowe 2004; Fischler & Bolles 1981; OpenCV). Verified candidates also
                include each work's `top_m` (5) nearest neighbours with cosine >= `floor` (0.55).
            workers: verification processes; exact: force exact (True) or k-means-cell
                (False) candidate search (default: exact up to 50,000 works).

        Returns:
            `DuplicateReport`: `groups` (cliques: every member a duplicate of every other; the
            keeper has the most pixels, then the largest file), `pairs` (every duplicate pair,
            store rows i < j, float32 cosine, int inliers), the settings used.

        Raises:
            UsageError: an empty store. ParameterError: threshold or floor outside [-1, 1],
            min_inliers < 4, top_m < 0, or a threshold so low that more than 20 million pairs
            pass it.
        """
        return find_duplicates(self.store, threshold, verify=verify, min_inliers=min_inliers, workers=workers,
                               exact=exact, top_m=top_m if verify else 0, floor=floor)

    def leaks(self, column: str, threshold: float | None = None, **options) -> DuplicateReport:
        """Near-duplicate groups spanning several values of label `column` (train/test leakage).

        Same options and result as `duplicates`; each group's `sides` lists the values of
        `column` it spans. Raises ParameterError when `column` is not a label column.
        """
        if column not in self.store.label_columns:
            raise ParameterError("column", f"{column!r}: no such label column (labels: "
                                           f"{', '.join(self.store.label_columns) or 'none'})")
        verify = options.pop("verify", VERIFY_DUPLICATES)
        top_m = options.pop("top_m", None)
        return find_duplicates(self.store, threshold, verify=verify, across=column,
                               top_m=top_m if verify else 0, **options)

    def copy_unique(self, report: DuplicateReport, out_dir: str | os.PathLike) -> int:
        """Copy keepers and unique works to `out_dir` (originals untouched); returns the count."""
        return copy_unique(self.store, report, out_dir)

    def clusters(self, k: int | str = "auto", *, k_range: str | list[int] = CLUSTER_K_RANGE,
                 sample_size: int = CLUSTER_SAMPLE, seed: int = 0,
                 plots_dir: str | os.PathLike | None = None,
                 duplicates: DuplicateReport | None = None, method: str = CLUSTER_METHOD,
                 eps: float | None = None, min_samples: int | None = None,
                 min_cluster_size: int | None = None) -> ClusterReport:
        """Clusters and their representative works (`artenc.cluster.cluster_store`): k-medoids
        with a principled k by default, or k-means, HDBSCAN, DBSCAN.

        Args:
            k: number of clusters, or "auto": sweep `k_range` ("START:STOP[:STEP]", STOP
                excluded) and take the knee of the inertia curve (kneed; Satopää et al. 2011),
                refined by the silhouette (Rousseeuw 1987); the gap statistic (Tibshirani et al.
                2001) is reported too.
            sample_size: most works in the distance matrix (4 * s^2 bytes); larger stores are
                clustered on a sample and every work joins its nearest medoid.
            plots_dir: write elbow/silhouette curves, the medoid strip and cluster montages (PNG).
            duplicates: a `DuplicateReport` of this store: each dropped duplicate counts as
                the same picture as its keeper. Identical files and vectors always count once,
                so the medoids are distinct pictures.
            method: "kmedoids" (default); "kmeans" (scikit-learn KMeans on the unit vectors, same
                k choice and curves, representative = the work nearest each centroid); "hdbscan"
                (scikit-learn HDBSCAN, Campello et al. 2013; finds k, labels noise -1); "dbscan"
                (scikit-learn DBSCAN, Ester et al. 1996; finds k, labels noise -1).
            eps: dbscan: a cosine distance, neighbours have cosine >= 1 - eps (default: the
                knee of the sorted distances to the min_samples-th nearest work).
            min_samples: hdbscan/dbscan: works within reach, itself included, that make a core
                work (dbscan default 5; hdbscan default min_cluster_size).
            min_cluster_size: hdbscan: the smallest cluster (default 5).

        Returns:
            `ClusterReport`: medoid rows and paths, (n,) int64 cluster of every work (-1 noise),
            (n,) float32 cosine distance (1 - cos) to its medoid (NaN for noise), label purity,
            the sweep. k-medoids: cosine distances, FasterPAM (Schubert & Rousseeuw 2021,
            `kmedoids`). The rules for each method and for stores above `sample_size` are in
            the `artenc.cluster` module docstring.

        Raises:
            UsageError: an empty store. ParameterError: a bad k (above the number of distinct
            pictures, "auto" with fewer than 3 of them, or a fixed k with hdbscan/dbscan),
            k_range, sample_size, method, or an option given to a method that does not use it.
        """
        return cluster_store(self.store, k, k_range=k_range, sample_size=sample_size, seed=seed,
                             plots_dir=plots_dir,
                             keepers=None if duplicates is None else duplicates.representatives,
                             method=method, eps=eps, min_samples=min_samples, min_cluster_size=min_cluster_size)

    def evaluate(self, fields: Sequence[str] | None = None, *, k: int = EVALUATION_K,
                 query_split: str | None = None, gallery_split: str | None = None,
                 split_column: str = SPLIT_COLUMN, linear_probe: bool = True) -> EvaluationReport:
        """Retrieval metrics per label field (`artenc.evaluate.evaluate_store`).

        Args:
            fields: label columns (default: every label column but the split column).
            k: neighbours behind P@k, mAP@k, R@k and kNN accuracy.
            query_split / gallery_split: values of `split_column` for queries and gallery
                (default: all works, leave-one-out).
            linear_probe: also fit a logistic regression (scikit-learn) on the vectors.

        Returns:
            `EvaluationReport`: per field `FieldMetrics` (fractions in [0, 1]); definitions
            as in Musgrave et al. 2020 ("A Metric Learning Reality Check").

        Raises:
            ParameterError: an unknown field or split; UsageError: a store without labels.
        """
        fields = [fields] if isinstance(fields, str) else fields
        return evaluate_store(self.store, fields, k=k, query_split=query_split, gallery_split=gallery_split,
                              split_column=split_column, linear_probe=linear_probe)

    def predict(self, images: str | os.PathLike | Sequence[str | os.PathLike], fields: Sequence[str] | None = None,
                k: int = EVALUATION_K) -> PredictionReport:
        """kNN label votes (style, school, period...) for image files (`artenc.predict.predict_images`).

        Each image is embedded with the store's model; its k nearest stored works vote on every
        field, weighted by cosine similarity (missing labels do not vote); a stored image is
        left out of its own neighbours. Returns `PredictionReport` (per image: label, share of
        the votes in [0, 1], the neighbours). An unreadable image gets `error` and no votes.
        Raises UsageError for a missing file, ParameterError for an unknown field or k < 1.
        """
        from artenc.predict import predict_images  # torch: the images are embedded

        images = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        fields = [fields] if isinstance(fields, str) else fields
        return predict_images(self.store, images, fields, k, encoder=self.encoder)

    def quality(self, thresholds: QualityThresholds | None = None) -> QualityReport:
        """Image-quality issues, worst first per flag (`artenc.quality.quality_report`).

        Reads the scores `artenc embed` stored with the items (no image is opened): dark,
        overexposed, blurry (variance of the Laplacian; Pech-Pacheco et al. 2000),
        low_information (grey-histogram entropy), odd_aspect_ratio, odd_size, grayscale
        (colourfulness; Hasler & Süsstrunk 2003), sepia (toned monochrome), uniform_borders.

        Args:
            thresholds: when a score makes a flag (default `QualityThresholds()`, the values of
                `artenc.defaults.QUALITY_*`).

        Returns:
            `QualityReport`: per flag the flagged works (store row, path, ranking score),
            worst first; `table` holds every work's scores and flags. Works embedded before
            artenc measured quality have only their size flags; `note` says
            "<n> works: not computed (re-embed)".
        """
        return quality_report(self.store.items, thresholds)

    def audit(self, fields: Sequence[str] | None = None, *, k: int = AUDIT_K, folds: int = AUDIT_FOLDS,
              top: int = AUDIT_TOP, seed: int = 0, duplicates: DuplicateReport | None = None,
              split_column: str = SPLIT_COLUMN) -> AuditReport:
        """Label issues, outliers and duplicate links of every work (`artenc.audit.audit_store`).

        Args:
            fields: label columns to check (default: every label column but the split column).
            k: neighbours of the kNN label vote and of the outlier score.
            folds: stratified folds of the cross-validated linear probe (scikit-learn).
            top: works listed worst-first per list in `to_dict()` (the table holds all).
            duplicates: a `DuplicateReport` of this store to link works with (default: identical
                files and cosine >= 0.9, embedding only, no SIFT).

        Returns:
            `AuditReport`: per field, each work's given and suggested label and label quality
            in [0, 1] (out-of-sample probabilities of a linear probe and a kNN vote, averaged,
            ranked by confident learning, Northcutt et al. 2021, `cleanlab`); each work's mean
            cosine distance to its k nearest (outlier score, rank, robust z); duplicate links.
            `table()` is one row per work, `to_dict()` the `artenc audit --json` document.

        Raises:
            UsageError: an empty store. ParameterError: an unknown field, k < 1, folds < 2, top < 0.
        """
        fields = [fields] if isinstance(fields, str) else fields
        return audit_store(self.store, fields, k=k, folds=folds, top=top, seed=seed, duplicates=duplicates,
                           split_column=split_column)

    def info(self) -> dict:
        """The JSON document `artenc info` prints: count, dim, model, preprocessing, skipped files."""
        return self.store.summary()
