"""EmbeddingStore: a directory of vectors, items and metadata; no pickle anywhere.

The store owns its folder layout: every path inside STORE/ comes from a `Store` property
(`meta_path`, `segment_dir`, `labels_path`, `index_dir`, `keypoints_dir`), and every path
of artenc's cache folder outside any store from `cache_dir` and its siblings below.

Layout::

    STORE/
      meta.json                  model name, weights fingerprint, preprocessing, dim, version
      segments/seg-000001.npy    (m, dim) L2-normalised vectors, float32 or float16 (`Store.dtype`,
                                 chosen at creation, meta.json "dtype"; every read gives float32)
      segments/seg-000001.parquet  one row per file seen: path, relpath, sha256, size, mtime_ns,
                                 width, height, error (null when embedded), row (into the .npy, -1 if skipped),
                                 and since quality scores exist the float columns of
                                 `artenc.quality.SCORE_COLUMNS` (brightness, sharpness, ...; NaN
                                 where not measured; absent from older stores)
      labels.parquet             optional: path + label columns (joined to items on read)
      last_embed.json            optional: the counts and file lists of the last embed run (`artenc info`)
      .lock                      the writers' lock (`Store.lock`, filelock): segment ids, commits, compaction
      writers/<host>-<pid>-<hex>.lock  one per embed run in progress (`Store.writing`), locked while it runs
      shards/shard-IIIII-of-NNNNN.json  optional: what shard I of N (`artenc embed --shard I/N`) found and
                                 did, with its state (running, finished); shards/merged.json: the
                                 revision `Store.merge` left (`artenc info` shows both)
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
`compact()` rewrites the live rows as one segment, then removes the old ones;
`compact_if_worth_it()` (the end of every embed run) does so only when dead rows or the
number of segments pass a bound, and otherwise writes nothing. Every file is written
through `artenc.atomic` (temporary file, fsync, rename).

Out of core: opening a store reads only the `path` and `row` columns of the segments and keeps
which segment row holds each item as int arrays (`len`, `summary` never open a .npy); vectors are
read from the segment files in blocks by positioned reads (`vector_blocks`, `vectors_at`: only
the rows asked for; the pages stay in the OS page cache, outside the process's resident memory,
where a memory map would count them, up to a large folio per random row); `items` reads its
columns from the Parquet files only when asked (`item_columns` reads only some), one segment at
a time. `summary` (`artenc info`) counts from the Parquet footers alone when the segments'
statistics settle it (`_footer_count`), and this module reads and writes through pyarrow, so
opening a store and summarising it never import pandas (Arrow's `to_pandas` does, for the
DataFrame views).

Several writers (the shards of one embed job, on one machine or many sharing the folder) can
add to one store at once: a segment id is chosen and the segment written under `Store.lock`
(a `filelock.FileLock`, i.e. flock(2) on STORE/.lock, released by the kernel when its holder
dies, even by SIGKILL), so no two writers take the same id; each writer marks itself active
for its whole run (`Store.writing`) and compaction, which deletes segments, runs only under
the lock when no other writer is active. The folder must be on a file system with working
locks (local disks, NFSv4, Lustre mounted with `flock`; filelock falls back to a lock file
elsewhere).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

import artenc
from artenc.atomic import (
    atomic_save_npy,
    atomic_save_parquet,
    atomic_write_json,
    is_temp_file,
    remove_temp_files,
    temp_path_for,
)
from artenc.defaults import SCORE_COLUMNS
from artenc.errors import ParameterError, StoreError
from artenc.shards import Shard

if TYPE_CHECKING:  # the item views are DataFrames made by pyarrow (`Table.to_pandas`, which
    # imports pandas then): opening a store and `summary` (`artenc info`) never import pandas
    import pandas as pd

log = logging.getLogger(__name__)

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
_LOCK_FILE = ".lock"
_WRITERS_DIR = "writers"
_SHARDS_DIR = "shards"
_SHARD_RECORD = re.compile(r"^shard-(\d{5})-of-(\d{5})\.json$")
_MERGED_FILE = "merged.json"
REMOVED_ROW = -2  # `row` of a tombstone: the path's file vanished and is no longer in the store
_INDEX_DIR = "index"
_KEYPOINTS_DIR = "keypoints"
CACHE_DIR_ENV = "ARTENC_CACHE_DIR"  # environment variable naming artenc's cache folder
DTYPES = ("float32", "float16")  # how a store may keep its vectors on disk (`Store.dtype`)
BLOCK_ROWS = 65536  # default rows per block of `Store.vector_blocks`
# `Store.compact_if_worth_it`: rewrite when more than this fraction of all segment rows is dead
# (superseded or removed), or merge the newest small segments when there are more than
# COMPACT_MAX_SEGMENTS; otherwise a run leaves the committed segments alone
COMPACT_DEAD_FRACTION = 0.25
COMPACT_MAX_SEGMENTS = 32
INDEX_META_FILE = "index.json"  # in `Store.index_dir`: the saved index's kind, parameters and coverage
COMPACT_SMALL_ROWS = 10_000  # a store with at most this many rows is always kept in one segment (cheap)


@dataclass(frozen=True)
class ModelSignature:
    """What makes vectors comparable: the model, its weights, its preprocessing and its
    quantisation (None: float32 inference; "int8": `artenc.runtime.quantize_onnx`, whose vectors
    differ from float32 ones by up to 1 - cosine 0.01, so the two never share a store)."""

    model: str
    fingerprint: str
    preprocess: dict
    dim: int
    weights: str | None = None  # the weights file, when one was given
    quantization: str | None = None  # recorded in meta.json only when set
    # the quantisation recipe's version (`artenc.runtime.Int8Recipe.version`); meta.json only when
    # set: two recipes' int8 vectors differ as much as int8 and float32 ones, so they never mix
    quantization_recipe: str | None = None

    def matches(self, meta: dict) -> bool:
        return (
            meta.get("fingerprint") == self.fingerprint
            and meta.get("dim") == self.dim
            and meta.get("preprocess") == self.preprocess
            and meta.get("quantization") == self.quantization
            and quantization_recipe(meta) == quantization_recipe(
                {"quantization": self.quantization, "quantization_recipe": self.quantization_recipe})
        )


# int8 stores written before meta.json recorded the quantisation recipe used this one
FIRST_INT8_RECIPE = "qdq-conv-minmax-skip-first-quarter-v1"


def quantization_recipe(meta: dict) -> str | None:
    """The quantisation recipe of a store's vectors from its meta.json `meta`: None for float32
    stores, `FIRST_INT8_RECIPE` for int8 stores written before the recipe was recorded."""
    if not meta.get("quantization"):
        return None
    return meta.get("quantization_recipe") or FIRST_INT8_RECIPE


def _recipe_text(recipe: str | None) -> str:
    return f" (recipe {recipe})" if recipe else ""


def _locked(method):
    """Run a Store method holding `Store.lock` (reentrant: a locked method may call another)."""

    @functools.wraps(method)
    def wrapper(self: Store, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class MergeReport:
    """What `Store.merge` did: `segments_before` -> `segments` committed segments, `count`
    vectors; `shards`: N of the sharded run it joined (None: the store had no shard records);
    `complete`: every shard of N had finished."""

    store: str
    segments_before: int
    segments: int
    count: int
    shards: int | None
    complete: bool

    def to_dict(self) -> dict:
        return asdict(self)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


@dataclass
class _Layout:
    """Where each live item's vector is, as compact arrays (`Store._layout`). `seq` numbers the
    rows of all segments concatenated, oldest segment first."""

    segments: tuple[int, ...]  # committed segment ids, oldest first
    seg_rows: np.ndarray  # int64 (s,): rows in each segment's .parquet
    live_seq: np.ndarray  # int64: the newest row of every path not removed, sorted by path
    item_seq: np.ndarray  # int64 (n,): those with a vector, in `items` order
    skip_seq: np.ndarray  # int64: those skipped (row -1), sorted by path
    item_seg: np.ndarray  # int32 (n,): position in `segments` of each item's vector
    item_row: np.ndarray  # int64 (n,): its row in that segment's .npy
    paths: pa.Array | None = None  # (n,) large_string: the items' paths (None: not read yet)


def _pread_into(fd: int, view: memoryview, offset: int, path: Path) -> None:
    """Fill the byte view `view` from file descriptor `fd` at `offset` (``os.preadv``, no seek);
    StoreError when the file ends first (a truncated segment)."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise StoreError(f"{path}: ends early (truncated vector file)")
        done += got


_SORTED_UNIQUE = "sorted-unique"  # the `artenc` attr of a segment whose rows are sorted by unique path


def _sorted_unique(frame: pd.DataFrame) -> pd.DataFrame:
    """Segment rows sorted by path, the last row of a path kept (as on reading), marked so in the
    Parquet metadata (`DataFrame.attrs`): with the file's path statistics a reader can tell
    that segments share no path without reading the paths (`_disjoint_order`)."""
    frame = frame.drop_duplicates("path", keep="last").sort_values("path", kind="stable").reset_index(drop=True)
    frame.attrs["artenc"] = _SORTED_UNIQUE
    return frame


def _disjoint_order(files: list[pq.ParquetFile]) -> list[int] | None:
    """Positions of the segments in path order when each one is sorted by unique path (marked by
    `_sorted_unique`) and their path ranges (Parquet statistics) do not overlap; else None."""
    ranges = []
    for i, f in enumerate(files):
        meta = f.schema_arrow.metadata or {}
        if json.loads(meta.get(b"PANDAS_ATTRS", b"{}")).get("artenc") != _SORTED_UNIQUE:
            return None
        md = f.metadata
        if md.num_rows == 0:
            continue
        col = f.schema_arrow.get_field_index("path")
        stats = [md.row_group(g).column(col).statistics for g in range(md.num_row_groups)]
        if any(s is None or not s.has_min_max for s in stats):
            return None
        ranges.append((min(s.min for s in stats), max(s.max for s in stats), i))
    ranges.sort()
    if any(a[1] >= b[0] for a, b in itertools.pairwise(ranges)):
        return None
    return [i for _, _, i in ranges]


class Store:
    """An embedding store on disk. Open with `Store.open(path)`; create with `Store.create`."""

    def __init__(self, root: Path, meta: dict) -> None:
        self.root = root
        self.meta = meta
        self._writer: Path | None = None  # this object's mark in writers/ while writing
        self._mark: FileLock | None = None  # the lock held on it

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
    def create(cls, path: str | os.PathLike, signature: ModelSignature, extra: dict | None = None,
               dtype: str | None = None) -> Store:
        """Create an empty store, or open an existing one after checking it uses the same model.

        `dtype`: how the vectors are kept on disk, "float32" or "float16" (half the bytes;
        cosines within ~1e-3), chosen at creation and recorded in meta.json; None: float32 for
        a new store, the store's own for an existing one. Raises ParameterError("dtype") for
        another name, StoreError when an existing store keeps another dtype or model.
        """
        if dtype is not None and dtype not in DTYPES:
            raise ParameterError("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root}: is a file, not a store folder; choose another store folder")
        if not (root / _META_FILE).exists():
            # several jobs may create the store at once: the first one to hold the lock writes
            # meta.json, the others find it; what a creator leaves meanwhile is not "foreign"
            # (checked under the lock: once meta.json exists, a creator adds its writer mark)
            ours = {_LOCK_FILE, _SEGMENTS_DIR, _META_FILE}
            foreign = root.exists() and any(p.name not in ours and not is_temp_file(p) for p in root.iterdir())
            if foreign and not (root / _META_FILE).exists():  # a user's folder: leave no lock file in it
                raise StoreError(f"{root}: folder exists, is not empty and is not an artenc store")
            root.mkdir(parents=True, exist_ok=True)
            with FileLock(str(root / _LOCK_FILE)):
                if not (root / _META_FILE).exists():
                    if any(p.name not in ours and not is_temp_file(p) for p in root.iterdir()):
                        raise StoreError(f"{root}: folder exists, is not empty and is not an artenc store")
                    cls._write_meta(root, signature, extra, dtype)
        store = cls.open(root)
        store.check_signature(signature)
        if dtype is not None and dtype != store.dtype:
            raise StoreError(f"{root}: store keeps its vectors as {store.dtype} (chosen when it was created); "
                             f"refusing dtype {dtype!r}. Leave dtype unset or use another store folder.")
        return store

    @staticmethod
    def _write_meta(root: Path, signature: ModelSignature, extra: dict | None, dtype: str | None) -> None:
        (root / _SEGMENTS_DIR).mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "model": signature.model,
            "fingerprint": signature.fingerprint,
            "preprocess": signature.preprocess,
            "dim": signature.dim,
            "weights": signature.weights,
            **({"quantization": signature.quantization} if signature.quantization else {}),
            **({"quantization_recipe": signature.quantization_recipe} if signature.quantization_recipe else {}),
            "artenc_version": artenc.__version__,
            "dtype": dtype or "float32",
            **(extra or {}),
        }
        atomic_write_json(root / _META_FILE, meta)

    def check_signature(self, signature: ModelSignature) -> None:
        """Refuse to mix vectors from another model, other weights or other preprocessing."""
        if not signature.matches(self.meta):
            raise StoreError(
                f"{self.root}: store holds vectors of model {self.meta.get('model')!r} "
                f"(weights {self.meta.get('fingerprint')}, dim {self.meta.get('dim')}, preprocess "
                f"{self.meta.get('preprocess')}, quantization {self.meta.get('quantization')}"
                f"{_recipe_text(quantization_recipe(self.meta))}); refusing to add "
                f"vectors of {signature.model!r} (weights {signature.fingerprint}, dim {signature.dim}, preprocess "
                f"{signature.preprocess}, quantization {signature.quantization}"
                f"{_recipe_text(quantization_recipe(asdict(signature)))}). "
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

    @property
    def shards_dir(self) -> Path:
        """STORE/shards/: one record per shard of a sharded embed run, and merged.json."""
        return self.root / _SHARDS_DIR

    @cached_property
    def lock(self) -> FileLock:
        """The writers' lock (STORE/.lock; a reentrant `filelock.FileLock`): held while a segment
        id is chosen and the segment written, and while compacting or merging. Readers never
        take it (a reader sees whole committed segments only, see the module docstring)."""
        return FileLock(str(self.root / _LOCK_FILE))

    def _segment_file(self, seg: int, suffix: str) -> Path:
        return self.segment_dir / f"seg-{seg:06d}{suffix}"

    # ----- segments ------------------------------------------------------------------

    def segment_ids(self) -> list[int]:
        """Committed segments, oldest first (a segment without its .parquet is not committed)."""
        if not self.segment_dir.is_dir():
            return []
        ids = [int(m.group(1)) for p in self.segment_dir.iterdir() if (m := _SEGMENT.match(p.name))]
        return sorted(ids)

    @_locked
    def append_segment(self, rows: pd.DataFrame, vectors: np.ndarray) -> int:
        """Commit rows (BASE_COLUMNS, and any of OPTIONAL_COLUMNS they have, stored as float64;
        `row` indexes `vectors`, (m, dim), kept as `dtype`) atomically; returns the segment id."""
        missing = [c for c in BASE_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"segment rows lack columns {missing}")
        vectors = np.ascontiguousarray(vectors, dtype=self.dtype).reshape(-1, self.dim)
        if len(vectors) != int((rows["row"] >= 0).sum()):
            raise ValueError("segment: number of vectors differs from rows with row >= 0")
        ids = self.segment_ids()
        seg = (ids[-1] + 1) if ids else 1
        self.segment_dir.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(self._segment_file(seg, ".npy"), vectors)
        optional = [c for c in OPTIONAL_COLUMNS if c in rows.columns]
        frame = _sorted_unique(rows[BASE_COLUMNS + optional].astype({c: "float64" for c in optional}))
        atomic_save_parquet(self._segment_file(seg, ".parquet"), frame)
        self.reload()
        return seg

    def _parquet(self, seg: int) -> pq.ParquetFile:
        """The Parquet file of segment `seg` (footer read); StoreError naming it when it is not a
        readable Parquet file (truncated, overwritten)."""
        path = self._segment_file(seg, ".parquet")
        try:
            return pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(f"{path}: not a readable Parquet segment ({exc}); the store is damaged") from None

    def _segment_tables(self, ids: Sequence[int], columns: Sequence[str]) -> pa.Table:
        """`columns` of the segments `ids`, concatenated in that order (a column a segment lacks:
        NaN for OPTIONAL_COLUMNS, else null); reads nothing else."""
        parts = []
        for seg in ids:
            segment = self._parquet(seg)  # one file: no dataset layer
            names = set(segment.schema_arrow.names)
            try:
                table = segment.read(columns=[c for c in columns if c in names])
            except (pa.ArrowException, OSError) as exc:
                raise StoreError(f"{self._segment_file(seg, '.parquet')}: unreadable segment table ({exc}); "
                                 "the store is damaged") from None
            for c in columns:
                if c not in names:
                    fill = pa.array(np.full(table.num_rows, np.nan)) if c in OPTIONAL_COLUMNS else \
                        pa.nulls(table.num_rows)
                    table = table.append_column(c, fill)
            parts.append(table.select(list(columns)))
        if not parts:
            return pa.table({c: pa.array([], pa.float64() if c in OPTIONAL_COLUMNS else pa.string())
                             for c in columns})
        return pa.concat_tables(parts, promote_options="permissive")

    @cached_property
    def _layout(self) -> _Layout:
        """Which segment row holds each live item (newest row per path wins), from the `path` and
        `row` columns only."""
        ids = self.segment_ids()
        files = [self._parquet(seg) for seg in ids]
        sizes = np.array([f.metadata.num_rows for f in files], dtype=np.int64)
        seg_of = np.repeat(np.arange(len(ids), dtype=np.int32), sizes)
        disjoint = _disjoint_order(files)
        if disjoint is not None:  # no path in two segments: the `row` column is all it takes
            del files
            row = self._segment_tables(ids, ["row"])["row"].to_numpy().astype(np.int64, copy=False)
            starts = np.r_[0, np.cumsum(sizes)[:-1]]
            order = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in disjoint] or
                                   [np.zeros(0, np.int64)])
            order = order[row[order] != REMOVED_ROW]  # a tombstone whose path is gone already
            embedded = row[order] >= 0
            item_seq = order[embedded]
            return _Layout(tuple(ids), sizes, order, item_seq, order[~embedded], seg_of[item_seq], row[item_seq])
        del files
        table = self._segment_tables(ids, ["path", "row"])
        paths = table["path"].combine_chunks()
        if not pa.types.is_large_string(paths.type):
            paths = paths.cast(pa.large_string())
        row = table["row"].to_numpy().astype(np.int64, copy=False)
        n = len(paths)
        # already strictly increasing (one compacted segment, or segments of disjoint sorted paths):
        # no duplicates and in items order; an O(n) check instead of a sort
        if n <= 1 or pc.all(pc.greater(paths[1:], paths[:-1])).as_py():
            order = np.arange(n, dtype=np.int64)
        else:  # sort by path, then by age; the last row of each run of equal paths is the newest
            keys = pa.table({"path": paths, "seq": pa.array(np.arange(n, dtype=np.int64))})
            order = pc.sort_indices(keys, sort_keys=[("path", "ascending"), ("seq", "ascending")]).to_numpy()
            ordered = paths.take(pa.array(order))
            last = np.ones(n, dtype=bool)
            last[:-1] = pc.not_equal(ordered[1:], ordered[:-1]).to_numpy(zero_copy_only=False)
            order = order[last]
        order = order[row[order] != REMOVED_ROW]
        embedded = row[order] >= 0
        item_seq = order[embedded]
        return _Layout(tuple(ids), sizes, order, item_seq, order[~embedded], seg_of[item_seq], row[item_seq],
                       paths.take(pa.array(item_seq)))

    def _footer_count(self) -> int | None:
        """`len(self)` from the segments' Parquet footers alone (no column read), when they settle
        it: segments of sorted unique paths with disjoint path ranges (`_disjoint_order`) whose
        `row` statistics are all >= 0 (no skipped file, no tombstone), so every row is a live
        item; None otherwise (or when the layout is read already: then `len(self)`)."""
        if "_layout" in self.__dict__:
            return None
        files = [self._parquet(seg) for seg in self.segment_ids()]
        if _disjoint_order(files) is None:
            return None
        total = 0
        for f in files:
            md = f.metadata
            col = f.schema_arrow.get_field_index("row")
            stats = [md.row_group(g).column(col).statistics for g in range(md.num_row_groups)]
            if any(st is None or not st.has_min_max or st.min < 0 for st in stats):
                return None
            total += md.num_rows
        return total

    def _rows_table(self, seq: np.ndarray, columns: Sequence[str]) -> pa.Table:
        """`columns` of the concatenated segment rows `seq` (int64 indices), in that order, as an
        Arrow table: one segment read at a time and its rows taken (so beside the result only one
        segment's columns are in memory, not every segment's), then put in `seq` order (no copy
        when `seq` visits the segments in turn, as for segments of disjoint sorted paths)."""
        lay = self._layout
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) == 0:
            return self._segment_tables([], columns)
        ends = np.cumsum(lay.seg_rows)
        seg_pos = np.searchsorted(ends, seq, side="right")
        order = np.argsort(seg_pos, kind="stable")
        by_seg = seg_pos[order]
        parts = []
        for pos in np.unique(by_seg).tolist():
            lo, hi = np.searchsorted(by_seg, pos), np.searchsorted(by_seg, pos, side="right")
            rows = seq[order[lo:hi]] - (ends[pos] - lay.seg_rows[pos])
            part = self._segment_tables([lay.segments[pos]], columns)
            whole = len(rows) == part.num_rows and bool(np.all(rows == np.arange(len(rows))))
            parts.append(part if whole else part.take(pa.array(rows)))
            del part
        table = pa.concat_tables(parts, promote_options="permissive")
        if np.any(order != np.arange(len(order))):
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            table = table.take(pa.array(inverse))
        return table

    def _take(self, seq: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
        """`columns` of the concatenated segment rows `seq` (int64 indices), as a DataFrame."""
        frame = self._rows_table(seq, columns).to_pandas()
        frame.attrs.clear()  # the segments' marker (`_sorted_unique`) is no item data
        return frame

    def _stored_optional(self) -> list[str]:
        """The OPTIONAL_COLUMNS that some segment has (older stores lack them)."""
        names: set[str] = set()
        for seg in self._layout.segments:
            names |= set(pq.read_schema(self._segment_file(seg, ".parquet")).names)
        return [c for c in OPTIONAL_COLUMNS if c in names]

    def _vector_file(self, seg: int) -> tuple[Path, int, int, np.dtype]:
        """Segment `seg`'s .npy: (path, byte offset of the data, rows, dtype), from its header."""
        files = self.__dict__.setdefault("_vector_files", {})
        if seg not in files:
            path = self._segment_file(seg, ".npy")
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                if fortran or dtype.hasobject or len(shape) != 2 or shape[1] != self.dim:
                    raise StoreError(f"{path}: not a C-ordered (m, {self.dim}) vector file")
                files[seg] = (path, f.tell(), int(shape[0]), dtype)
        return files[seg]

    def _gather(self, segs: Sequence[int], seg_pos: np.ndarray, rows: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
        """float32 (m, dim) C-contiguous (`out` when given, filled in place): row `rows[i]` of
        segment `segs[seg_pos[i]]`. Each run of consecutive rows is one positioned read of the
        .npy file (no memory map: pages read stay in the page cache, not in this process)."""
        m = len(rows)
        out = np.empty((m, self.dim), dtype=np.float32) if out is None else out
        if m == 0:
            return out
        order = np.lexsort((rows, seg_pos))  # by segment, then row: sequential reads
        pos, r = seg_pos[order], rows[order]
        cuts = np.flatnonzero((np.diff(pos) != 0) | (np.diff(r) != 1)) + 1
        in_order = bool(np.all(order == np.arange(m)))
        for seg_index in np.unique(pos):
            path, offset, n_rows, dtype = self._vector_file(segs[int(seg_index)])
            row_bytes = self.dim * dtype.itemsize
            lo_seg, hi_seg = np.searchsorted(pos, seg_index), np.searchsorted(pos, seg_index, side="right")
            if r[lo_seg] < 0 or r[hi_seg - 1] >= n_rows:
                raise StoreError(f"{path}: holds {n_rows} vectors; row {int(r[hi_seg - 1])} asked (damaged store?)")
            starts = np.r_[lo_seg, cuts[(cuts > lo_seg) & (cuts < hi_seg)]]
            stops = np.r_[starts[1:], hi_seg]
            direct = in_order and dtype == np.float32
            buf = out[lo_seg:hi_seg] if direct else np.empty((hi_seg - lo_seg, self.dim), dtype=dtype)
            view = memoryview(buf).cast("B")
            fd = os.open(path, os.O_RDONLY)
            try:  # one positioned read per run, straight into the block (no per-run arrays)
                for lo, hi in zip(starts.tolist(), stops.tolist(), strict=True):
                    _pread_into(fd, view[(lo - lo_seg) * row_bytes:(hi - lo_seg) * row_bytes],
                                offset + int(r[lo]) * row_bytes, path)
            finally:
                os.close(fd)
            if not direct:
                out[order[lo_seg:hi_seg]] = buf  # one conversion (float16) and placement per segment
        return out

    def _item_rows(self, rows: Sequence[int] | np.ndarray | None, param: str = "rows") -> np.ndarray | None:
        if rows is None:
            return None
        idx = np.asarray(rows)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ParameterError(param, f"must be a 1-d sequence of item rows (integers), got {idx.dtype} "
                                        f"of shape {idx.shape}")
        n = len(self)
        if idx.min() < 0 or idx.max() >= n:
            raise ParameterError(param, f"must index items 0..{n - 1}, got {int(idx.min())}..{int(idx.max())}")
        return idx.astype(np.int64, copy=False)

    def vector_blocks(self, rows: np.ndarray | None = None,
                      block_rows: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """The vectors in blocks, read from the segment files; never the whole set.

        Args:
            rows: item rows (int, into `items`) in the order wanted; None: every item, in `items` order.
            block_rows: rows per block, >= 1 (a block holds block_rows * dim * 4 bytes).

        Yields:
            (offset, block): `block` float32 (m, dim) C-contiguous L2-normalised rows (float16
            stores converted), m <= block_rows; `offset` indexes `items` (rows None) or `rows`
            of the block's first row.

        Raises:
            ParameterError: `rows` not 1-d integers within 0..len(store)-1, block_rows < 1.
        """
        if block_rows < 1:
            raise ParameterError("block_rows", f"must be >= 1, got {block_rows}")
        idx = self._item_rows(rows)
        lay = self._layout
        total = len(lay.item_seq) if idx is None else len(idx)
        for start in range(0, total, block_rows):
            stop = min(start + block_rows, total)
            sel = slice(start, stop) if idx is None else idx[start:stop]
            yield start, self._gather(lay.segments, lay.item_seg[sel], lay.item_row[sel])

    def vectors_at(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (len(rows), dim) L2-normalised vectors of item rows `rows` (into `items`),
        read from the segment files (only those rows). Raises ParameterError for rows out of range."""
        idx = self._item_rows(rows)
        lay = self._layout
        return self._gather(lay.segments, lay.item_seg[idx], lay.item_row[idx])

    def snapshot(self) -> Store:
        """Another view of this store as it is now: its item rows (`vectors_at`) keep meaning
        the same vectors while this one appends segments (until a compaction deletes some)."""
        view = Store(self.root, self.meta)
        view.__dict__["_layout"] = self._layout
        return view

    def reload(self) -> Store:
        """Forget cached views so the next access reads the files again."""
        for cached in ("_layout", "_vectors", "_vector_files", "labels", "_items", "_row_of_path"):
            self.__dict__.pop(cached, None)
        return self

    # ----- public views --------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def dtype(self) -> str:
        """How the vectors are kept on disk: "float32" or "float16" (meta.json; older stores:
        float32). Every read (`vectors`, `vector_blocks`, `vectors_at`) returns float32."""
        return str(self.meta.get("dtype", "float32"))

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32, L2-normalised, aligned with `items`: MATERIALISES every vector in
        memory (n * dim * 4 bytes, kept until `reload`). For small stores and code that needs
        them all at once; at scale read `vector_blocks` or `vectors_at` instead."""
        return self._vectors

    @cached_property
    def _vectors(self) -> np.ndarray:
        out = np.empty((len(self), self.dim), dtype=np.float32)
        lay = self._layout
        for start in range(0, len(out), BLOCK_ROWS):  # straight into `out`: no block beside it
            sel = slice(start, start + BLOCK_ROWS)
            self._gather(lay.segments, lay.item_seg[sel], lay.item_row[sel], out[sel])
        out.flags.writeable = False
        return out

    @property
    def items(self) -> pd.DataFrame:
        """One row per embedded file: ITEM_COLUMNS, the quality scores (OPTIONAL_COLUMNS, when
        the store has them: NaN for files embedded before) and the label columns (shared: treat
        as read-only, like `vectors`; `.copy()` it to modify). Reads every item column; see
        `item_columns` for a few."""
        return self._items

    @cached_property
    def _items(self) -> pd.DataFrame:
        return self.item_columns(ITEM_COLUMNS + self._stored_optional() + self.label_columns)

    def item_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """Only `columns` (item or label columns) of `items`, reading only those from disk.

        Raises ParameterError("columns") naming a column the store does not have.
        """
        columns = list(columns)
        if "_items" in self.__dict__:
            return self._items[columns]
        labels = [c for c in columns if c in self.label_columns]
        unknown = [c for c in columns if c not in labels and c not in ITEM_COLUMNS and c not in OPTIONAL_COLUMNS]
        if unknown:
            raise ParameterError("columns", f"{', '.join(map(repr, unknown))}: not a column of {self.root}")
        own = [c for c in columns if c not in labels]
        frame = self._take(self._layout.item_seq, list(dict.fromkeys(own + ["path"] if labels else own)))
        if labels:
            frame = frame.merge(self.labels[["path", *labels]], on="path", how="left", validate="one_to_one")
        return frame[columns]

    @property
    def skipped(self) -> pd.DataFrame:
        """Files that could not be embedded, with the reason (`error`)."""
        return self._take(self._layout.skip_seq, ["path", "relpath", "error", "size", "mtime_ns"]).reset_index(
            drop=True)

    @property
    def label_columns(self) -> list[str]:
        if "labels" in self.__dict__ or not self.labels_path.is_file():
            labels = self.labels
            return [] if labels is None else [c for c in labels.columns if c != "path"]
        return [c for c in pq.read_schema(self.labels_path).names if c != "path"]  # no rows read

    def __len__(self) -> int:
        return len(self._layout.item_seq)

    @cached_property
    def labels(self) -> pd.DataFrame | None:
        return pq.read_table(self.labels_path).to_pandas() if self.labels_path.is_file() else None

    def set_labels(self, labels: pd.DataFrame) -> None:
        """Store label columns keyed by absolute `path` (replaces earlier labels; writes nothing
        when they are equal to the stored ones)."""
        if "path" not in labels.columns:
            raise ValueError("labels need a 'path' column")
        reserved = (set(ITEM_COLUMNS) | set(OPTIONAL_COLUMNS)) - {"path"}
        clash = [c for c in labels.columns if c in reserved]
        if clash:
            labels = labels.rename(columns={c: f"label_{c}" for c in clash})
        labels = labels.drop_duplicates("path", keep="last").astype({"path": str}).reset_index(drop=True)
        old = self.labels
        if old is not None and list(old.columns) == list(labels.columns) and old.astype(object).equals(
                labels.astype(object)):
            return
        atomic_save_parquet(self.labels_path, labels)
        self.reload()

    @property
    def revision(self) -> str:
        """Changes whenever the set of vectors changes (used to detect stale indexes)."""
        ids = ",".join(str(i) for i in self.segment_ids())
        return hashlib.sha1(f"{self.meta.get('fingerprint')}|{ids}".encode()).hexdigest()[:16]

    def physical_rows(self) -> np.ndarray:
        """(n,) int64, in `items` order: each item's position among the vectors of all segments
        concatenated (oldest segment first). Appending a segment never changes it (compaction
        does); the ids of an ``ivfpq`` index (`artenc.index`). Reads only .npy headers."""
        lay = self._layout
        counts = np.array([self._vector_file(seg)[2] for seg in lay.segments], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
        return offsets[lay.item_seg] + lay.item_row if len(lay.item_seq) else np.zeros(0, np.int64)

    def known_files(self) -> pd.DataFrame:
        """Latest row per path (embedded or skipped; removed paths left out), sorted by path, for
        incremental runs: BASE_COLUMNS (`row`: the row in its segment's .npy, -1 when skipped),
        the stored OPTIONAL_COLUMNS and `segment` (the segment id holding it)."""
        lay = self._layout
        frame = self._take(lay.live_seq, BASE_COLUMNS + self._stored_optional())
        frame["segment"] = np.asarray(lay.segments, dtype=np.int64)[
            np.searchsorted(np.cumsum(lay.seg_rows), lay.live_seq, side="right")] if len(lay.live_seq) else 0
        return frame.reset_index(drop=True)

    def index_of(self, paths: Sequence[str]) -> list[int | None]:
        """Row indices of absolute paths in `items` (None where absent); a few paths are looked
        up by a scan of the sorted path column, many through a dict built once."""
        if len(paths) > 16 or "_row_of_path" in self.__dict__:
            return [self._row_of_path.get(str(p)) for p in paths]
        live = self._item_paths()
        out: list[int | None] = []
        for p in paths:
            i = pc.index(live, pa.scalar(str(p), pa.large_string())).as_py()
            out.append(None if i < 0 else i)
        return out

    @cached_property
    def _row_of_path(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self._item_paths().to_pylist())}

    def _item_paths(self) -> pa.Array:
        """The items' paths (large_string, strictly increasing), read once when needed."""
        lay = self._layout
        if lay.paths is None:
            table = self._rows_table(lay.item_seq, ["path"])
            lay.paths = table["path"].combine_chunks().cast(pa.large_string())
        return lay.paths

    # ----- writers -------------------------------------------------------------------
    def start_writing(self) -> None:
        """Mark this process as a writer of the store until `stop_writing` (or until this Store
        object is garbage-collected, or the process dies: the kernel then frees the mark): a
        lock file in STORE/writers/ held meanwhile, so that no other process compacts the store
        (`other_writers`). `writing()` is the same as a context manager."""
        if self._writer is not None:
            return
        folder = self.root / _WRITERS_DIR
        with self.lock:  # a compaction that holds the lock sees every mark made before it
            folder.mkdir(exist_ok=True)
            path = folder / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.lock"
            self._mark = FileLock(str(path))
            self._mark.acquire()
        self._writer = path

    def stop_writing(self) -> None:
        """End what `start_writing` began (nothing when it was not called)."""
        if self._writer is None:
            return
        self._writer.unlink(missing_ok=True)
        self._mark.release()
        self._writer = self._mark = None

    @contextmanager
    def writing(self) -> Iterator[Store]:
        """`start_writing` ... `stop_writing` around a block."""
        self.start_writing()
        try:
            yield self
        finally:
            self.stop_writing()

    def other_writers(self) -> int:
        """How many other processes (or other Store objects) are inside `writing` now; the
        marks of writers that died are removed on the way."""
        return len(self._live_marks())

    def _live_marks(self) -> list[Path]:
        """The writer marks (`start_writing`) of other writers alive now; dead ones are removed."""
        folder = self.root / _WRITERS_DIR
        if not folder.is_dir():
            return []
        active = []
        for path in sorted(folder.glob("*.lock")):
            if path == self._writer:
                continue
            probe = FileLock(str(path))
            try:
                probe.acquire(timeout=0)
            except Timeout:
                active.append(path)
                continue
            path.unlink(missing_ok=True)  # its writer is gone
            probe.release()
        return active

    def running_shards(self) -> list[int]:
        """Indices of the unfinished shards (`shard_status`) whose process (recorded host and
        pid) holds a live writer mark now: still running, where the others stopped unfinished
        (killed, failed). Marks are named HOST-PID-TOKEN.lock (`start_writing`)."""
        status = self.shard_status()
        if not status:
            return []
        live = {tuple(p.stem.rsplit("-", 2)[:2]) for p in self._live_marks()}
        return [r["index"] for r in status["per_shard"]
                if r["index"] in status["unfinished"] and (str(r.get("host")), str(r.get("pid"))) in live]

    # ----- maintenance ---------------------------------------------------------------
    @_locked
    def remove(self, paths: Sequence[str]) -> int:
        """Remove `paths` (files that vanished) from the store: one committed segment of
        tombstone rows (`REMOVED_ROW`), dropped for good by the next `compact`. Vectors and
        skip records of these paths disappear from every view at once. Returns how many
        of `paths` the store held."""
        known = set(self._take(self._layout.live_seq, ["path"])["path"])
        gone = sorted({str(p) for p in paths} & known)
        if gone:
            n = len(gone)
            rows = pa.table({"path": gone, "relpath": [""] * n, "sha256": [""] * n, "size": [-1] * n,
                             "mtime_ns": [-1] * n, "width": [-1] * n, "height": [-1] * n,
                             "error": ["removed: file gone"] * n, "row": [REMOVED_ROW] * n}).to_pandas()
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

    def compaction_plan(self, *, small_rows: int = COMPACT_SMALL_ROWS, dead_fraction: float = COMPACT_DEAD_FRACTION,
                        max_segments: int = COMPACT_MAX_SEGMENTS) -> list[int]:
        """The segments `compact_if_worth_it` would merge, oldest first; [] when none.

        With two segments or more: all of them when the segments hold at most `small_rows`
        rows in all (a rewrite costs next to nothing) or more than `dead_fraction` of their rows
        are dead (superseded by a newer row of their path, or removed); else, when there are
        more than `max_segments` segments, the newest run of small ones (going back from the
        newest, a segment joins while it holds at most twice the rows gathered so far), so each
        row is rewritten O(log n) times over a store's life and a big segment is left alone.

        A saved ``ivfpq`` index covering the oldest segments (`indexed_segments`) grows with
        new segments only while those stay (`artenc.index.update_index`), so then the
        `small_rows` rule is skipped and the newest run never reaches a covered segment: only
        more than `dead_fraction` dead rows rewrite them (and the index is rebuilt).
        """
        lay = self._layout
        ids = list(lay.segments)
        if len(ids) <= 1:
            return []
        total = int(lay.seg_rows.sum())
        covered = len(self.indexed_segments())
        if total - len(lay.live_seq) > dead_fraction * total or (total <= small_rows and not covered):
            return ids
        if len(ids) <= max_segments:
            return []
        gathered, start = int(lay.seg_rows[-1]), len(ids) - 1
        while start > max(covered, 0) and lay.seg_rows[start - 1] <= 2 * max(gathered, 1):
            start -= 1
            gathered += int(lay.seg_rows[start])
        if covered:
            return ids[start:] if len(ids) - start >= 2 else []
        return ids[start:] if len(ids) - start >= 2 else ids

    def indexed_segments(self) -> list[int]:
        """The segments a saved ``ivfpq`` index covers (its ``index.json`` in `index_dir`, written
        by `artenc.index.save_index`) when they are still the store's oldest segments; [] when
        there is no such index."""
        try:
            meta = json.loads((self.index_dir / INDEX_META_FILE).read_text())
        except (OSError, ValueError):
            return []
        segments = meta.get("segments") if isinstance(meta, dict) and meta.get("kind") == "ivfpq" else None
        if not isinstance(segments, list) or not segments:
            return []
        return segments if self.segment_ids()[:len(segments)] == segments else []

    @_locked
    def compact_if_worth_it(self, **bounds) -> list[int]:
        """`compaction_plan(**bounds)`, carried out: merges those segments (as `compact` does)
        and returns their ids; writes nothing (the revision, so a saved index, stays valid) when
        the plan is empty."""
        if self.other_writers():
            log.info("%s: not compacted while other writers are active", self.root)
            return []
        plan = self.compaction_plan(**bounds)
        if plan:
            self._merge(plan)
        return plan

    @_locked
    def compact(self) -> None:
        """Rewrite all live rows as one segment, then delete the superseded segments; does
        nothing while another writer is active (`other_writers`: `merge` compacts later)."""
        if self.other_writers():
            log.info("%s: not compacted while other writers are active", self.root)
            return
        ids = self.segment_ids()
        if len(ids) > 1:
            self._merge(ids)

    def _merge(self, ids: list[int]) -> None:
        """Rewrite the newest row per path of segments `ids` (the newest ones, or all) as one new
        segment, vectors copied block by block (never all in memory), then delete them. Merging
        all drops removed paths for good; merging the newest keeps their tombstones."""
        everything = ids == self.segment_ids()
        optional = self._stored_optional()
        table = self._segment_tables(ids, BASE_COLUMNS + optional)
        sizes = [self._parquet(seg).metadata.num_rows for seg in ids]
        rows = table.to_pandas()
        rows["_pos"] = np.repeat(np.arange(len(ids), dtype=np.int32), sizes)
        rows = rows.drop_duplicates("path", keep="last").sort_values("path", kind="stable")
        if everything:
            rows = rows[rows["row"] != REMOVED_ROW]
        rows = rows.reset_index(drop=True)
        ok = rows["row"].to_numpy() >= 0
        pos, src = rows["_pos"].to_numpy()[ok], rows["row"].to_numpy()[ok].astype(np.int64)
        new_rows = rows.drop(columns=["_pos"])
        new_rows.loc[ok, "row"] = np.arange(int(ok.sum()))
        tmp = temp_path_for(self.segment_dir / "merge.npy")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=(len(src), self.dim))
            for start in range(0, len(src), BLOCK_ROWS):
                stop = start + BLOCK_ROWS
                out[start:stop] = self._gather(ids, pos[start:stop], src[start:stop])
            out.flush()
            del out
            self.append_segment(new_rows, np.load(tmp, mmap_mode="r", allow_pickle=False))
        finally:
            tmp.unlink(missing_ok=True)
        for seg in ids:  # oldest first: a crash never lets an older row outlive a newer tombstone
            for suffix in (".parquet", ".npy"):  # parquet first: an orphan .npy is harmless
                self._segment_file(seg, suffix).unlink(missing_ok=True)
        remove_temp_files(self.segment_dir)
        self.reload()

    # ----- shards ----------------------------------------------------------------------
    def _shard_record_path(self, shard: Shard) -> Path:
        return self.shards_dir / f"shard-{shard.index:05d}-of-{shard.count:05d}.json"

    def record_shard(self, shard: Shard, record: dict) -> None:
        """Keep what shard `shard` of a sharded embed run found and did: `record` holds its
        `state` ("running" or "finished") and, once finished, the same keys as
        `record_last_embed` (outcomes, file lists). Written atomically; read by `shard_status`."""
        self.shards_dir.mkdir(exist_ok=True)
        atomic_write_json(self._shard_record_path(shard),
                          {"index": shard.index, "count": shard.count, **record})

    def check_shard_count(self, shard: Shard) -> None:
        """Refuse to start `shard` (I of N) when the store holds records of shards of another
        count M written since the last `merge`: shards of two splits would each miss or repeat
        files and their merge would count them wrong. Raises StoreError naming M."""
        merged = self.shards_dir / _MERGED_FILE
        since = merged.stat().st_mtime if merged.is_file() else float("-inf")
        pending = sorted({r["count"] for r in self.shard_records() if r["count"] != shard.count and r["_mtime"] > since})
        if pending:
            raise StoreError(f"{self.root}: holds unmerged records of shards of {pending[0]} jobs; refusing shard "
                             f"{shard} (another count). Finish and merge those (Store.merge, `artenc store merge`), "
                             f"or shard this run of {pending[0]} too")

    def shard_records(self) -> list[dict]:
        """Every readable shard record (`record_shard`) with its file's `_mtime`, by (N, index)."""
        if not self.shards_dir.is_dir():
            return []
        records = []
        for p in self.shards_dir.iterdir():
            if _SHARD_RECORD.match(p.name):
                try:
                    records.append({**json.loads(p.read_text()), "_mtime": p.stat().st_mtime})
                except (OSError, json.JSONDecodeError):
                    continue
        return sorted(records, key=lambda r: (r["count"], r["index"]))

    def shard_status(self) -> dict | None:
        """The sharded embed run of this store (None when it had none): `count` N (of the
        shard record written last), `finished`, `unfinished` (started, then killed or still
        running) and `not_started` shard indices, `complete` (all N finished), `merged` (the
        store has not changed since `merge`), `outcomes` summed over finished shards, and
        `per_shard`: each started shard's state, host, pid and (once finished) outcome counts."""
        records = self.shard_records()
        if not records:
            return None
        n = max(records, key=lambda r: r["_mtime"])["count"]
        mine = {r["index"]: r for r in records if r["count"] == n}
        finished = sorted(i for i, r in mine.items() if r.get("state") == "finished")
        unfinished = sorted(i for i, r in mine.items() if r.get("state") != "finished")
        try:
            merged = json.loads((self.shards_dir / _MERGED_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            merged = {}
        return {
            "count": n,
            "finished": finished,
            "unfinished": unfinished,
            "not_started": sorted(set(range(n)) - set(mine)),
            "complete": len(finished) == n,
            "merged": merged.get("count") == n and merged.get("revision") == self.revision,
            "outcomes": _combine_records([mine[i] for i in finished])["outcomes"],
            "per_shard": [{"index": i, "state": r.get("state"), "host": r.get("host"), "pid": r.get("pid"),
                           **r.get("outcomes", {})} for i, r in sorted(mine.items())],
        }

    @_locked
    def forget_shards(self) -> None:
        """Drop the shard records (STORE/shards/): a plain embed run supersedes them. Nothing
        happens while another writer is active (it may be a shard)."""
        if self.shards_dir.is_dir() and not self.other_writers():
            shutil.rmtree(self.shards_dir, ignore_errors=True)

    @_locked
    def merge(self, *, allow_incomplete: bool = False) -> MergeReport:
        """Join the parts of a sharded embed run (`artenc store merge`): check that every shard
        of N finished and that no writer is active, compact the store into one segment, and
        write the summed outcomes of the shards as the last embed run (`last_embed`). On a
        store without shard records it only compacts.

        Raises StoreError when another writer is active, or when a shard has not finished
        (unless `allow_incomplete`: then the parts present are joined)."""
        others = self.other_writers()
        if others:
            raise StoreError(f"{self.root}: {others} writer(s) still running (shards not done?); "
                             "merge once they have ended")
        status = self.shard_status()
        if status and not status["complete"] and not allow_incomplete:
            left = status["unfinished"] + status["not_started"]
            raise StoreError(f"{self.root}: shards {', '.join(map(str, sorted(left)))} of {status['count']} "
                             "have not finished; run them again (same I/N) before merging")
        before = len(self.segment_ids())
        self.compact()
        self.reload()
        if status:
            n = status["count"]
            done = [r for r in self.shard_records() if r["count"] == n and r.get("state") == "finished"]
            self.record_last_embed({**_combine_records(done), "shards": n})
            atomic_write_json(self.shards_dir / _MERGED_FILE, {"count": n, "revision": self.revision})
        return MergeReport(str(self.root), before, len(self.segment_ids()), len(self),
                           status["count"] if status else None, bool(status is None or status["complete"]))

    def summary(self) -> dict:
        """What `artenc info` prints: the store's model and contents (`count` vectors,
        `skipped` files with reasons) and `last_embed`: the last embed run's outcome counts
        (discovered = embedded + reused + unchanged + skipped + not_images; removed: files
        that vanished) with its lists of non-image files, unscanned folders and unmatched
        label rows (None before any recorded run); and, for a store written by sharded runs
        only, `shards` (`shard_status`: which shards finished, merged or not). Reads only the
        segments' Parquet footers when they settle the counts (`_footer_count`), else the `row`
        column of the segments (and the `path` column too when segments may share paths) and
        the rows of skipped files; never a vector file, never pandas."""
        count = self._footer_count()
        if count is None:
            count, lay = len(self), self._layout
            skipped = self._rows_table(lay.skip_seq, ["path", "error"]).to_pylist()
        else:
            skipped = []
        summary = {
            "store": str(self.root),
            "count": count,
            "dim": self.dim,
            "dtype": self.dtype,
            "model": self.meta.get("model"),
            "fingerprint": self.meta.get("fingerprint"),
            "preprocess": self.meta.get("preprocess"),
            "artenc_version": self.meta.get("artenc_version"),
            "label_columns": self.label_columns,
            "skipped": len(skipped),
            "skipped_files": [{"path": r["path"], "reason": r["error"]} for r in skipped],
            "last_embed": self.last_embed(),
        }
        if self.meta.get("quantization"):  # only quantised stores (runtime onnx-int8) have the keys
            summary["quantization"] = self.meta["quantization"]
            summary["quantization_recipe"] = quantization_recipe(self.meta)
        shards = self.shard_status()
        if shards is not None:  # only stores written by sharded runs have the key
            summary["shards"] = shards
        return summary


def _combine_records(records: list[dict]) -> dict:
    """One `record_last_embed` record from the records of finished shards: counts summed,
    file lists joined (folder and label-row lists, which every shard sees whole, once)."""
    keys = dict.fromkeys(k for r in records for k in r.get("outcomes", {}))  # EmbedReport.outcomes, in order
    outcomes = {k: sum(int(r["outcomes"].get(k, 0)) for r in records) for k in keys}
    joined = {k: [x for r in records for x in r.get(k, [])] for k in ("not_image_files", "removed_files")}
    once = {}
    for k in ("skipped_folders", "unmatched_label_rows"):
        seen: dict[str, object] = {}
        for r in records:
            for x in r.get(k, []):
                seen.setdefault(json.dumps(x, sort_keys=True), x)
        once[k] = list(seen.values())
    return {"outcomes": outcomes, **joined, **once}


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
