"""`artenc embed`: images -> store, batched, decoded in worker processes, resumable.

Only new or changed files are embedded (same size and mtime: unchanged; same content
hash as a stored vector: copied, not recomputed). Results are committed to the store
in segments every `flush_every` images, so a killed run loses at most one segment of
work and a re-run finishes the job with no lost and no duplicated rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from artenc.errors import ParameterError, UsageError
from artenc.images import (
    DEFAULT_MAX_PIXELS,
    Crop,
    ImageLoadError,
    absolute,
    decode_crop,
    discover_images,
    read_bytes,
    sha256_hex,
)
from artenc.labels import read_labels
from artenc.preprocess import PreprocessConfig
from artenc.progress import Progress
from artenc.runtime import Encoder, create_encoder
from artenc.store import BASE_COLUMNS, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileTask:
    path: str  # absolute
    relpath: str  # relative to the root it was found under


@dataclass
class EmbedReport:
    """What one `embed` run did."""

    store: str
    discovered: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    skipped: int = 0
    total: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    runtime: str = ""
    device: str = ""
    model: str = ""
    skipped_files: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _crop_or_error(source: bytes | str, preprocess: PreprocessConfig, max_pixels: int | None, name: str,
                   sha256: str | None = None) -> tuple[Crop | None, str | None]:
    """`decode_crop`, with any failure turned into its reason (the message without the name)."""
    try:
        return decode_crop(source, preprocess, max_pixels=max_pixels, name=name, sha256=sha256), None
    except ImageLoadError as exc:
        return None, str(exc).removeprefix(f"{name}: ")
    except Exception as exc:  # noqa: BLE001 - any decoder bug must not kill the batch
        return None, f"unexpected decoding error ({type(exc).__name__}: {exc})"


class DecodeDataset(Dataset):
    """Reads, hashes and preprocesses one file per item (`images.decode_crop`); never raises
    on bad images. Files whose hash is in `known_hashes` are hashed but not decoded."""

    def __init__(
        self,
        tasks: list[FileTask],
        preprocess: PreprocessConfig,
        max_pixels: int | None,
        known_hashes: frozenset[str] = frozenset(),
    ) -> None:
        self.tasks = tasks
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.known_hashes = known_hashes

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> dict:
        task = self.tasks[i]
        rec = {"path": task.path, "relpath": task.relpath, "sha256": None, "size": -1, "mtime_ns": -1,
               "width": -1, "height": -1, "error": None, "pixels": None}
        try:
            st = os.stat(task.path)
            rec["size"], rec["mtime_ns"] = st.st_size, st.st_mtime_ns
            data = read_bytes(task.path)
        except OSError as exc:
            rec["error"] = f"cannot read file ({exc.strerror or exc})"
            return rec
        except ImageLoadError as exc:
            rec["error"] = str(exc).removeprefix(f"{task.path}: ")
            return rec
        rec["sha256"] = sha256_hex(data)
        if rec["sha256"] in self.known_hashes:
            return rec  # vector already in the store under another path or an older version
        crop, rec["error"] = _crop_or_error(data, self.preprocess, self.max_pixels, task.path, rec["sha256"])
        if crop is not None:
            rec["width"], rec["height"], rec["pixels"] = crop.width, crop.height, crop.pixels
        return rec


def encode_files(
    paths: list[str | os.PathLike], encoder: Encoder, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
    batch_size: int = 32,
) -> tuple[np.ndarray, list[str | None]]:
    """Embed a few files in-process (queries).

    Returns ((n, dim) float32 unit vectors, zeros where a file failed; per file the reason
    it failed, or None). Decoding is `images.decode_crop` with the encoder's preprocessing.
    """
    vectors = np.zeros((len(paths), encoder.signature.dim), dtype=np.float32)
    errors: list[str | None] = []
    for start in range(0, len(paths), batch_size):
        good, pixels = [], []
        for j, p in enumerate(paths[start : start + batch_size], start):
            name = str(absolute(p))
            crop, error = _crop_or_error(name, encoder.preprocess, max_pixels, name)
            errors.append(error)
            if crop is not None:
                good.append(j)
                pixels.append(crop.pixels)
        if pixels:
            vectors[good] = encoder.encode(np.stack(pixels))
    return vectors, errors


def collate_records(records: list[dict]) -> tuple[list[dict], np.ndarray | None]:
    """Split a batch into metadata records and one stacked uint8 pixel array (N, 3, S, S)."""
    pixels = [r.pop("pixels") for r in records]
    good = [p for p in pixels if p is not None]
    for r, p in zip(records, pixels, strict=True):
        r["has_pixels"] = p is not None
    return records, (np.stack(good) if good else None)


def _plan(roots: list[Path], store: Store) -> tuple[list[FileTask], int, pd.DataFrame]:
    """Files to (re-)embed, the number unchanged, and the store's current rows."""
    files = discover_images(roots)
    known = store.known_files()
    by_path = {p: (s, m) for p, s, m in zip(known["path"], known["size"], known["mtime_ns"], strict=True)}
    tasks, unchanged = [], 0
    dirs = [absolute(r if r.is_dir() else r.parent) for r in roots]
    for f in files:
        try:
            st = f.stat()
            if by_path.get(str(f)) == (st.st_size, st.st_mtime_ns):
                unchanged += 1
                continue
        except OSError:
            pass  # unreadable: the worker records why

        rel = next((f.relative_to(d) for d in dirs if f.is_relative_to(d)), Path(f.name))
        tasks.append(FileTask(str(f), rel.as_posix()))
    return tasks, unchanged, known


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the embedding process dies, even by `kill -9`
    (otherwise it can block forever on a full result pipe and linger as an orphan)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _init_cpu_worker(_worker_id: int) -> None:
    """Decoding workers die with their parent and yield the CPU to the model (they fill its
    idle gaps instead of stalling it)."""
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(10)


def _init_worker(_worker_id: int) -> None:
    _die_with_parent()


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


def embed_folders(
    roots: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str = "tf_efficientnet_lite0",
    weights: str | None = None,
    labels: str | os.PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    runtime: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    flush_every: int = 1024,
    encoder: Encoder | None = None,
    progress: bool = True,
    trim_borders: bool | None = None,
) -> EmbedReport:
    """Embed every image under `roots` into the store at `out` (`artenc.embed`); resumable.

    Args:
        roots: image files and/or folders (searched recursively; hidden files skipped).
        out: the store folder (created, or extended when it holds the same model's vectors).
        model: a backbone name (`artenc.list_models()`, any timm name, `open_clip:ARCH/PRETRAINED`)
            or the path of an encoder exported by `artenc.train`; weights: a local weights file.
        labels: a CSV with a `path` column (relative to a root, or absolute) and label columns.
        batch_size: images per model call; workers: decoding processes (0: in this process);
            device: "auto" | "cpu" | "cuda"; runtime: "auto" | "torch" | "onnx".
        max_pixels: decompression-bomb guard, width * height in pixels (larger files are skipped).
        flush_every: images per committed segment (a kill loses at most this many).
        encoder: an already built `Encoder` (overrides model/weights/device/runtime).
        trim_borders: crop uniform letterbox bars before the centre crop (None: the model's choice).

    Returns:
        `EmbedReport`: counts (discovered, unchanged, embedded, reused, skipped, total),
        seconds, images per second, and every skipped file with its reason.

    Raises:
        UsageError: a missing root or nothing usable; ParameterError: a bad batch_size,
        flush_every, workers, device, runtime or labels file; StoreError: the store holds
        another model's vectors; WeightsUnavailableError: weights not found offline.

    Vectors are float32, L2-normalised, from the model's own preprocessing (see the module
    docstring); files whose size and mtime are unchanged are not read again.
    """
    if batch_size < 1:
        raise ParameterError("batch_size", f"must be >= 1, got {batch_size}")
    if flush_every < 1:
        raise ParameterError("flush_every", f"must be >= 1, got {flush_every}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ParameterError("workers", f"must be >= 0, got {workers}")
    root_paths = [Path(r) for r in roots]
    for r in root_paths:
        if not r.exists():
            raise UsageError(f"{r}: no such file or folder")
    label_df = read_labels(labels, root_paths) if labels else None

    start = time.monotonic()
    encoder = encoder or create_encoder(model, weights, device=device, runtime=runtime, trim_borders=trim_borders)
    store = Store.create(out, encoder.signature)
    tasks, unchanged, known = _plan(root_paths, store)
    report = EmbedReport(store=str(out), discovered=len(tasks) + unchanged, unchanged=unchanged,
                         runtime=encoder.runtime, device=encoder.device, model=encoder.signature.model)
    log.info("%d images found: %d unchanged, %d to embed (%s on %s)",
             report.discovered, unchanged, len(tasks), encoder.runtime, encoder.device)

    existing = store.items
    hash_to_row = {h: i for i, h in enumerate(existing["sha256"])} if len(existing) else {}
    dataset = DecodeDataset(tasks, encoder.preprocess, max_pixels, frozenset(hash_to_row))
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_records,
        prefetch_factor=4 if workers else None, persistent_workers=False,
        worker_init_fn=_init_cpu_worker if encoder.device == "cpu" else _init_worker,
        multiprocessing_context="spawn" if workers and torch.cuda.is_available() else None,
    )
    rows: list[dict] = []
    vecs: list[np.ndarray] = []
    n_vec = 0

    def flush() -> None:
        nonlocal rows, vecs, n_vec
        if rows:
            frame = pd.DataFrame(rows, columns=BASE_COLUMNS)
            block = np.concatenate(vecs) if vecs else np.zeros((0, store.dim), np.float32)
            store.append_segment(frame, block)
        rows, vecs, n_vec = [], [], 0

    try:
        with Progress(len(tasks), "embed", enabled=progress) as bar:
            for records, pixels in loader:
                out_vecs = encoder.encode(pixels) if pixels is not None else None
                k = 0
                for r in records:
                    row = {c: r.get(c) for c in BASE_COLUMNS}
                    if r["has_pixels"]:
                        vecs.append(out_vecs[k : k + 1])
                        k += 1
                        row["row"] = n_vec
                        n_vec += 1
                        report.embedded += 1
                    elif r["error"] is None and r["sha256"] in hash_to_row:
                        src = hash_to_row[r["sha256"]]
                        vecs.append(np.asarray(store.vectors[src : src + 1]))
                        row["width"], row["height"] = (int(existing["width"][src]), int(existing["height"][src]))
                        row["row"] = n_vec
                        n_vec += 1
                        report.reused += 1
                    else:
                        row["row"] = -1
                        report.skipped += 1
                        report.skipped_files.append({"path": r["path"], "reason": r["error"]})
                        log.warning("skipped %s: %s", r["path"], r["error"])
                    rows.append(row)
                bar.update(len(records))
                if len(rows) >= flush_every:
                    flush()
    finally:
        flush()  # also on Ctrl-C: finished batches are kept

    store.compact()
    if label_df is not None:
        store.set_labels(label_df)
        missing = len(set(store.items["path"]) - set(label_df["path"]))
        if missing:
            log.warning("%d embedded images have no row in %s", missing, labels)
    store.reload()
    report.total = len(store)
    report.seconds = round(time.monotonic() - start, 3)
    done = report.embedded + report.reused
    report.images_per_second = round(done / report.seconds, 2) if report.seconds else 0.0
    log.info("embedded %d, reused %d, skipped %d, unchanged %d; store %s now holds %d vectors (%.1f s)",
             report.embedded, report.reused, report.skipped, unchanged, out, report.total, report.seconds)
    return report
