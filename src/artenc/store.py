"""EmbeddingStore: a directory of vectors, items and metadata; no pickle anywhere.

The store owns its folder layout: every path inside STORE/ comes from a `Store` property
(`meta_path`, `segment_dir`, `labels_path`, `index_dir`, `keypoints_dir`), and every path
of artenc's cache folder outside any store from `cache_dir` and its siblings below.

Layout::

    STORE/
      meta.json                  model name, weights fingerprint, preprocessing, dim, version
      segments/seg-000001.npy    float32 (m, dim) L2-normalised vectors
      segments/seg-000001.parquet  one row per file seen: path, relpath, sha256, size, mtime_ns,
                                 width, height, error (null when embedded), row (into the .npy, -1 if skipped),
                                 and since quality scores exist the float columns of
                                 `artenc.quality.SCORE_COLUMNS` (brightness, sharpness, ...; NaN
                                 where not measured; absent from older stores)
      labels.parquet             optional: path + label columns (joined to items on read)
      last_embed.json            optional: the counts and file lists of the last embed run (`artenc info`)
      index/faiss.index          optional: a saved FAISS index (written by `artenc.index.save_index`)
      index/index.json           its kind, parameters and the store revision it was built from
      keypoints/<version>/<sha256>.npz  SIFT keypoints per image content (`artenc.verify.KeypointCache`)

    $ARTENC_CACHE_DIR/ (default ~/.cache/artenc; `cache_dir()`)
      onnx/                      ONNX exports of encoders (`onnx_cache_dir()`, artenc.runtime)
      features/                  backbone features for training (`feature_cache_dir()`, artenc.data)
      thumbnails/                thumbnails of the web page (`thumbnail_cache_dir()`, artenc.serve)

A segment is committed when its .parquet exists (written last, by atomic rename), so
a crash at any moment leaves only whole segments. When several segments mention the
same path, the newest one wins: re-embedding a changed file supersedes its old row, and a
row with `row` = REMOVED_ROW (-2, written by `remove`) removes its path (a file that vanished).
Every stored path is valid Unicode text (`artenc.images.display_path`).
`compact()` rewrites the live rows as one segment, then removes the old ones. Every file
is written through `artenc.atomic` (temporary file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from artenc import __version__
from artenc.atomic import atomic_save_npy, atomic_save_parquet, atomic_write_json, remove_temp_files
from artenc.errors import StoreError
from artenc.quality import SCORE_COLUMNS

FORMAT = "artenc-store/1"
BASE_COLUMNS = ["path", "relpath", "sha256", "size", "mtime_ns", "width", "height", "error", "row"]
ITEM_COLUMNS = ["path", "relpath", "sha256", "size", "mtime_ns", "width", "height"]
# item columns a segment may lack (stores written before they existed): float64, NaN where absent
OPTIONAL_COLUMNS = list(SCORE_COLUMNS)
_SEGMENT = re.compile(r"^seg-(\d{6})\.parquet$")
# the store's folder layout (see the module docstring); other modules use the Store properties
_META_FILE = "meta.json"
_SEGMENTS_DIR = "segments"
_LABELS_FILE = "labels.parquet"
_LAST_EMBED_FILE = "last_embed.json"
REMOVED_ROW = -2  # `row` of a tombstone: the path's file vanished and is no longer in the store
_INDEX_DIR = "index"
_KEYPOINTS_DIR = "keypoints"
CACHE_DIR_ENV = "ARTENC_CACHE_DIR"  # environment variable naming artenc's cache folder


@dataclass(frozen=True)
class ModelSignature:
    """What makes vectors comparable: the model, its weights and its preprocessing."""

    model: str
    fingerprint: str
    preprocess: dict
    dim: int
    weights: str | None = None  # the weights file, when one was given

    def matches(self, meta: dict) -> bool:
        return (
            meta.get("fingerprint") == self.fingerprint
            and meta.get("dim") == self.dim
            and meta.get("preprocess") == self.preprocess
        )


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


class Store:
    """An embedding store on disk. Open with `Store.open(path)`; create with `Store.create`."""

    def __init__(self, root: Path, meta: dict) -> None:
        self.root = root
        self.meta = meta

    # ----- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        """Open an existing store; raises StoreError naming the problem."""
        root = Path(path)
        meta_path = root / _META_FILE
        if not root.is_dir():
            raise StoreError(f"{root}: store not found (create one with artenc.embed or `artenc embed`)")
        if not meta_path.is_file():
            raise StoreError(f"{root}: not an artenc store (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{meta_path}: unreadable store metadata ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise StoreError(f"{meta_path}: unsupported store format {meta.get('format')!r}")
        return cls(root, meta)

    @classmethod
    def create(cls, path: str | os.PathLike, signature: ModelSignature, extra: dict | None = None) -> Store:
        """Create an empty store, or open an existing one after checking it uses the same model."""
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: is a file, not a store folder; choose another store folder")
        if (root / _META_FILE).exists():
            store = cls.open(root)
            store.check_signature(signature)
            return store
        if root.exists() and any(root.iterdir()):
            raise StoreError(f"{root}: folder exists, is not empty and is not an artenc store")
        (root / _SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "model": signature.model,
            "fingerprint": signature.fingerprint,
            "preprocess": signature.preprocess,
            "dim": signature.dim,
            "weights": signature.weights,
            "artenc_version": __version__,
            **(extra or {}),
        }
        atomic_write_json(root / _META_FILE, meta)
        return cls(root, meta)

    def check_signature(self, signature: ModelSignature) -> None:
        """Refuse to mix vectors from another model, other weights or other preprocessing."""
        if not signature.matches(self.meta):
            raise StoreError(
                f"{self.root}: store holds vectors of model {self.meta.get('model')!r} "
                f"(weights {self.meta.get('fingerprint')}, dim {self.meta.get('dim')}, preprocess "
                f"{self.meta.get('preprocess')}); refusing to add vectors of {signature.model!r} "
                f"(weights {signature.fingerprint}, dim {signature.dim}, preprocess {signature.preprocess}). "
                "Use another store folder."
            )

    # ----- layout --------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        """STORE/meta.json: model, fingerprint, preprocessing, dim, format."""
        return self.root / _META_FILE

    @property
    def segment_dir(self) -> Path:
        """STORE/segments/: seg-NNNNNN.npy vectors and seg-NNNNNN.parquet rows."""
        return self.root / _SEGMENTS_DIR

    @property
    def labels_path(self) -> Path:
        """STORE/labels.parquet: label columns keyed by path (absent until labels are set)."""
        return self.root / _LABELS_FILE

    @property
    def last_embed_path(self) -> Path:
        """STORE/last_embed.json: what the last embed run found and did (`record_last_embed`)."""
        return self.root / _LAST_EMBED_FILE

    @property
    def index_dir(self) -> Path:
        """STORE/index/: the saved FAISS index and its metadata (`artenc.index.save_index`)."""
        return self.root / _INDEX_DIR

    @property
    def keypoints_dir(self) -> Path:
        """STORE/keypoints/: cached SIFT keypoints per image content (`artenc.verify`)."""
        return self.root / _KEYPOINTS_DIR

    def _segment_file(self, seg: int, suffix: str) -> Path:
        return self.segment_dir / f"seg-{seg:06d}{suffix}"

    # ----- segments ------------------------------------------------------------------

    def segment_ids(self) -> list[int]:
        """Committed segments, oldest first (a segment without its .parquet is not committed)."""
        if not self.segment_dir.is_dir():
            return []
        ids = [int(m.group(1)) for p in self.segment_dir.iterdir() if (m := _SEGMENT.match(p.name))]
        return sorted(ids)

    def append_segment(self, rows: pd.DataFrame, vectors: np.ndarray) -> int:
        """Commit rows (BASE_COLUMNS, and any of OPTIONAL_COLUMNS they have, stored as float64;
        `row` indexes `vectors`) atomically; returns the segment id."""
        missing = [c for c in BASE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"segment rows lack columns {missing}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(vectors) != int((rows["row"] >= 0).sum()):
            raise ValueError("segment: number of vectors differs from rows with row >= 0")
        ids = self.segment_ids()
        seg = (ids[-1] + 1) if ids else 1
        self.segment_dir.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(self._segment_file(seg, ".npy"), vectors)
        optional = [c for c in OPTIONAL_COLUMNS if c in rows.columns]
        frame = rows[BASE_COLUMNS + optional].astype({c: "float64" for c in optional})
        atomic_save_parquet(self._segment_file(seg, ".parquet"), frame)
        self.reload()
        return seg

    def _read_segments(self) -> tuple[pd.DataFrame, np.ndarray]:
        """All committed rows (newest wins per path), sorted by path, and their vectors."""
        frames, blocks, offset = [], [], 0
        for seg in self.segment_ids():
            df = pd.read_parquet(self._segment_file(seg, ".parquet"))
            vec = np.load(self._segment_file(seg, ".npy"), mmap_mode="r", allow_pickle=False)
            row = df["row"].to_numpy()
            df["row"] = np.where(row >= 0, row + offset, row)  # negative: skipped (-1), REMOVED_ROW
            df["segment"] = seg
            offset += len(vec)
            frames.append(df)
            blocks.append(vec)
        if not frames:
            empty = pd.DataFrame({c: pd.Series(dtype="object") for c in BASE_COLUMNS})
            return empty, np.zeros((0, self.dim), dtype=np.float32)
        rows = pd.concat(frames, ignore_index=True)
        rows = rows.drop_duplicates("path", keep="last").sort_values("path", kind="stable")
        rows = rows[rows["row"] != REMOVED_ROW].reset_index(drop=True)
        all_vectors = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return rows, all_vectors

    @cached_property
    def _live(self) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        rows, all_vectors = self._read_segments()
        ok = rows[rows["row"] >= 0]
        vectors = np.asarray(all_vectors[ok["row"].to_numpy(dtype=np.int64)], dtype=np.float32)
        items = ok[ITEM_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in ok.columns]].reset_index(drop=True)
        skipped = rows[rows["row"] < 0][["path", "relpath", "error", "size", "mtime_ns"]].reset_index(drop=True)
        return items, vectors, skipped

    def reload(self) -> Store:
        """Forget cached views so the next access reads the files again."""
        for cached in ("_live", "labels", "_items", "_row_of_path"):
            self.__dict__.pop(cached, None)
        return self

    # ----- public views --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32, L2-normalised, aligned with `items`."""
        return self._live[1]

    @property
    def items(self) -> pd.DataFrame:
        """One row per embedded file: ITEM_COLUMNS, the quality scores (OPTIONAL_COLUMNS, when
        the store has them: NaN for files embedded before) and the label columns (shared: treat
        as read-only, like `vectors`; `.copy()` it to modify)."""
        return self._items

    @cached_property
    def _items(self) -> pd.DataFrame:
        items = self._live[0]
        labels = self.labels
        if labels is None or labels.empty:
            return items
        return items.merge(labels, on="path", how="left", validate="one_to_one")

    @property
    def skipped(self) -> pd.DataFrame:
        """Files that could not be embedded, with the reason (`error`)."""
        return self._live[2].copy()

    @property
    def label_columns(self) -> list[str]:
        labels = self.labels
        return [] if labels is None else [c for c in labels.columns if c != "path"]

    def __len__(self) -> int:
        return len(self._live[0])

    @cached_property
    def labels(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.labels_path) if self.labels_path.is_file() else None

    def set_labels(self, labels: pd.DataFrame) -> None:
        """Store label columns keyed by absolute `path` (replaces earlier labels)."""
        if "path" not in labels.columns:
            raise ValueError("labels need a 'path' column")
        reserved = (set(ITEM_COLUMNS) | set(OPTIONAL_COLUMNS)) - {"path"}
        clash = [c for c in labels.columns if c in reserved]
        if clash:
            labels = labels.rename(columns={c: f"label_{c}" for c in clash})
        labels = labels.drop_duplicates("path", keep="last").astype({"path": str})
        atomic_save_parquet(self.labels_path, labels.reset_index(drop=True))
        self.reload()

    @property
    def revision(self) -> str:
        """Changes whenever the set of vectors changes (used to detect stale indexes)."""
        ids = ",".join(str(i) for i in self.segment_ids())
        return hashlib.sha1(f"{self.meta.get('fingerprint')}|{ids}".encode()).hexdigest()[:16]

    def known_files(self) -> pd.DataFrame:
        """Latest row per path (embedded or skipped), for incremental runs."""
        return self._read_segments()[0]

    def index_of(self, paths: Sequence[str]) -> list[int | None]:
        """Row indices of absolute paths in `items` (None where absent)."""
        return [self._row_of_path.get(str(p)) for p in paths]

    @cached_property
    def _row_of_path(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self._live[0]["path"])}

    # ----- maintenance ---------------------------------------------------------------
    def remove(self, paths: Sequence[str]) -> int:
        """Remove `paths` (files that vanished) from the store: one committed segment of
        tombstone rows (`REMOVED_ROW`), dropped for good by the next `compact`. Vectors and
        skip records of these paths disappear from every view at once. Returns how many
        of `paths` the store held."""
        known = set(self.known_files()["path"])
        gone = sorted({str(p) for p in paths} & known)
        if gone:
            n = len(gone)
            rows = pd.DataFrame({"path": gone, "relpath": [""] * n, "sha256": [""] * n, "size": [-1] * n,
                                 "mtime_ns": [-1] * n, "width": [-1] * n, "height": [-1] * n,
                                 "error": ["removed: file gone"] * n, "row": [REMOVED_ROW] * n})
            self.append_segment(rows, np.zeros((0, self.dim), np.float32))
        return len(gone)

    def record_last_embed(self, record: dict) -> None:
        """Keep the counts and file lists of the last embed run (shown by `summary`)."""
        atomic_write_json(self.last_embed_path, record)

    def last_embed(self) -> dict | None:
        """What `record_last_embed` kept, or None (no run recorded, or an unreadable file)."""
        try:
            return json.loads(self.last_embed_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def compact(self) -> None:
        """Rewrite all live rows as one segment, then delete the superseded segments."""
        ids = self.segment_ids()
        if len(ids) <= 1:
            return
        rows, all_vectors = self._read_segments()
        ok = rows["row"].to_numpy() >= 0
        vectors = np.asarray(all_vectors[rows.loc[ok, "row"].to_numpy(dtype=np.int64)], dtype=np.float32)
        new_rows = rows.drop(columns=["segment"]).copy()
        new_rows["row"] = -1
        new_rows.loc[ok, "row"] = np.arange(int(ok.sum()))
        self.append_segment(new_rows, vectors)
        for seg in ids:
            for suffix in (".parquet", ".npy"):  # parquet first: an orphan .npy is harmless
                self._segment_file(seg, suffix).unlink(missing_ok=True)
        remove_temp_files(self.segment_dir)
        self.reload()

    def summary(self) -> dict:
        """What `artenc info` prints: the store's model and contents (`count` vectors,
        `skipped` files with reasons) and `last_embed`: the last embed run's outcome counts
        (discovered = embedded + reused + unchanged + skipped + not_images; removed: files
        that vanished) with its lists of non-image files, unscanned folders and unmatched
        label rows (None before any recorded run)."""
        skipped = self.skipped
        return {
            "store": str(self.root),
            "count": len(self),
            "dim": self.dim,
            "model": self.meta.get("model"),
            "fingerprint": self.meta.get("fingerprint"),
            "preprocess": self.meta.get("preprocess"),
            "artenc_version": self.meta.get("artenc_version"),
            "label_columns": self.label_columns,
            "skipped": len(skipped),
            "skipped_files": [
                {"path": p, "reason": r} for p, r in zip(skipped["path"], skipped["error"], strict=True)
            ],
            "last_embed": self.last_embed(),
        }

    # TEMPORARY: replaced by the ooc branch (out-of-core reads); minimal versions on `self.vectors`
    @property
    def dtype(self) -> str:
        """The stored vectors' dtype name ("float32"; arithmetic is always float32)."""
        return "float32"

    def vector_blocks(self, rows: np.ndarray | None = None, block_rows: int = 65536):
        """Yield (offset, float32 (m, dim) block) over `rows` (default: all, in items order)."""
        n = len(self) if rows is None else len(rows)
        for start in range(0, n, max(1, int(block_rows))):
            stop = min(n, start + int(block_rows))
            sel = slice(start, stop) if rows is None else np.asarray(rows[start:stop], dtype=np.int64)
            yield start, np.ascontiguousarray(self.vectors[sel], dtype=np.float32)

    def vectors_at(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) vectors of item rows `rows`."""
        return np.ascontiguousarray(self.vectors[np.asarray(rows, dtype=np.int64)], dtype=np.float32)


# ----- artenc's cache folder (outside any store) ----------------------------------------
def cache_dir() -> Path:
    """artenc's cache folder: $ARTENC_CACHE_DIR, else $XDG_CACHE_HOME/artenc, else ~/.cache/artenc.

    Holds what can be recomputed and is shared by all stores (ONNX exports, training
    features, thumbnails); nothing in it is needed to read a store.
    """
    base = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "artenc"
    )
    return Path(base)


def onnx_cache_dir() -> Path:
    """`cache_dir()`/onnx: ONNX exports of encoders, one file per model, weights and preprocessing."""
    return cache_dir() / "onnx"


def feature_cache_dir() -> Path:
    """`cache_dir()`/features: backbone features cached for training (`artenc.data.feature_cache`)."""
    return cache_dir() / "features"


def thumbnail_cache_dir() -> Path:
    """`cache_dir()`/thumbnails: JPEG thumbnails served by the web page (`artenc.serve`)."""
    return cache_dir() / "thumbnails"
