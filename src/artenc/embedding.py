"""`artenc embed`: images -> store, batched, decoded in worker processes, resumable.

Only new or changed files are embedded (same size and mtime: unchanged; same content
hash as a stored vector: copied, not recomputed). Results are committed to the store
in segments of whole batches once `flush_every` images are pending, so a killed run loses
at most one segment of work and a re-run finishes the job with no lost and no duplicated rows.

Accounting: every file found under the roots (`images.scan_images`; hidden files aside) has
exactly one outcome: embedded, reused, unchanged, skipped (with a reason) or not an image, so
`discovered` is their sum (`EmbedReport.outcome_total`). Files the store held under a scanned
folder that are gone are removed from it (`removed`); labels CSV rows that name no image are
listed (`unmatched_label_rows`).

Sharding (`shard=(I, N)`, `artenc embed --shard I/N`): the run takes only the files that
`artenc.shards` assigns to job I of N by their relative path (found, counted, embedded and,
when gone, removed: never another shard's), so N jobs started at once on one store embed
disjoint parts. A shard run writes its outcome to the store's shard record (`Store.record_shard`)
instead of the last-run record, and never compacts; `Store.merge` (`artenc store merge`)
joins the parts once every shard has finished. A killed shard re-run with the same I/N
finishes its part like any resumed run.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from artenc.defaults import MAX_ASPECT_RATIO
from artenc.errors import ParameterError, UsageError
from artenc.images import (
    DEFAULT_MAX_PIXELS,
    NAME_PROBLEM,
    Crop,
    ImageLoadError,
    absolute,
    check_max_aspect_ratio,
    decode_crop,
    display_path,
    name_problem,
    read_image_bytes,
    scan_images,
    sha256_hex,
)
from artenc.labels import match_labels, read_labels_table
from artenc.preprocess import PreprocessConfig
from artenc.progress import Progress
from artenc.quality import SCORE_COLUMNS
from artenc.runtime import Encoder, create_encoder, runtime_for_store
from artenc.shards import Shard, parse_shard
from artenc.store import BASE_COLUMNS, ITEM_COLUMNS, OPTIONAL_COLUMNS, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileTask:
    path: str  # absolute, as stored (`images.display_path`)
    relpath: str  # relative to the root it was found under, as stored
    fspath: str = ""  # the name to open when it differs from `path` (not valid UTF-8)
    error: str | None = None  # a reason to skip it without reading (its name)


@dataclass
class EmbedReport:
    """What one `embed` run did; every count is a number of files.

    discovered = embedded + reused + unchanged + skipped + not_images (`outcome_total`):
    embedded (new vectors), reused (content already in the store), unchanged (same size and
    mtime as stored), skipped (`skipped_files`: path and reason), not_images (`not_image_files`:
    content no image format). removed (`removed_files`): files the store held under a scanned
    folder that are gone, dropped from it. skipped_folders: folders not scanned, with the
    reason (unreadable; a symlink to a folder already scanned). unmatched_labels
    (`unmatched_label_rows`: the CSV's `path` values): labels CSV rows that name no image.
    total: vectors in the store after the run. Paths are `images.display_path` text.
    """

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
    not_images: int = 0
    not_image_files: list[str] = field(default_factory=list)
    removed: int = 0
    removed_files: list[str] = field(default_factory=list)
    skipped_folders: list[dict] = field(default_factory=list)
    unmatched_labels: int = 0
    unmatched_label_rows: list[str] = field(default_factory=list)

    def outcome_total(self) -> int:
        """embedded + reused + unchanged + skipped + not_images: equals `discovered`."""
        return self.embedded + self.reused + self.unchanged + self.skipped + self.not_images

    def outcomes(self) -> dict[str, int]:
        """The counts by outcome (what `artenc info` shows of the last run)."""
        return {"discovered": self.discovered, "embedded": self.embedded, "reused": self.reused,
                "unchanged": self.unchanged, "skipped": self.skipped, "not_images": self.not_images,
                "removed": self.removed}

    def to_dict(self) -> dict:
        return asdict(self)


def _crop_or_error(source: bytes | str, preprocess: PreprocessConfig, max_pixels: int | None, name: str,
                   sha256: str | None = None, quality: bool = False,
                   max_aspect_ratio: float | None = MAX_ASPECT_RATIO) -> tuple[Crop | None, str | None]:
    """`decode_crop`, with any failure turned into its reason (the message without the name)."""
    try:
        return decode_crop(source, preprocess, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio, name=name,
                           sha256=sha256, quality=quality), None
    except ImageLoadError as exc:
        return None, str(exc).removeprefix(f"{name}: ")
    except Exception as exc:  # noqa: BLE001 - any decoder bug must not kill the batch
        return None, f"unexpected decoding error ({type(exc).__name__}: {exc})"


class DecodeDataset(Dataset):
    """Reads, hashes and preprocesses one file per item (`images.decode_crop`, with the image's
    quality scores when `quality`); never raises on bad images. Files whose hash is in
    `known_hashes` are hashed but not decoded; `max_pixels` and `max_aspect_ratio` are
    `images.check_geometry`'s limits."""

    def __init__(
        self,
        tasks: list[FileTask],
        preprocess: PreprocessConfig,
        max_pixels: int | None,
        known_hashes: frozenset[str] = frozenset(),
        quality: bool = True,
        max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    ) -> None:
        self.tasks = tasks
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.max_aspect_ratio = max_aspect_ratio
        self.known_hashes = known_hashes
        self.quality = quality

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> dict:
        task = self.tasks[i]
        rec = {"path": task.path, "relpath": task.relpath, "sha256": None, "size": -1, "mtime_ns": -1,
               "width": -1, "height": -1, "error": None, "pixels": None, "stats": None}
        fspath = task.fspath or task.path
        try:
            st = os.stat(fspath)
            rec["size"], rec["mtime_ns"] = st.st_size, st.st_mtime_ns
            if task.error:
                rec["error"] = task.error
                return rec
            data = read_image_bytes(fspath, max_pixels=self.max_pixels, max_aspect_ratio=self.max_aspect_ratio)
        except OSError as exc:
            rec["error"] = task.error or f"cannot read file ({exc.strerror or exc})"
            return rec
        except ImageLoadError as exc:
            rec["error"] = str(exc).removeprefix(f"{fspath}: ")
            return rec
        rec["sha256"] = sha256_hex(data)
        if rec["sha256"] in self.known_hashes:
            return rec  # vector already in the store under another path or an older version
        crop, rec["error"] = _crop_or_error(data, self.preprocess, self.max_pixels, task.path, rec["sha256"],
                                            self.quality, self.max_aspect_ratio)
        if crop is not None:
            rec["width"], rec["height"], rec["pixels"] = crop.width, crop.height, crop.pixels
            rec["stats"] = crop.stats.to_dict() if crop.stats is not None else None
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


def collate_records(records: list[dict]) -> tuple[list[dict], np.ndarray | torch.Tensor | None]:
    """Split a batch into metadata records and one stacked uint8 pixel array (N, 3, S, S).

    Inside a DataLoader worker the pixels are stacked straight into shared memory (torch's
    `default_collate`), so the batch reaches the embedding process as a file descriptor
    instead of being pickled through a pipe (measured: ~0.5 ms of CPU per 224-px image on
    each side); `batch_pixels` turns either form into the NumPy array the encoder takes."""
    pixels = [r.pop("pixels") for r in records]
    good = [p for p in pixels if p is not None]
    for r, p in zip(records, pixels, strict=True):
        r["has_pixels"] = p is not None
    if not good:
        return records, None
    if torch.utils.data.get_worker_info() is not None:
        return records, default_collate([torch.from_numpy(p) for p in good])
    return records, np.stack(good)


def batch_pixels(pixels: np.ndarray | torch.Tensor | None) -> np.ndarray | None:
    """The uint8 (N, 3, S, S) NumPy view of a `collate_records` pixel batch (no copy)."""
    return pixels.numpy() if isinstance(pixels, torch.Tensor) else pixels


@dataclass
class _Plan:
    tasks: list[FileTask]  # files to read: new, changed, or skipped by name
    unchanged: int
    not_images: list[str]
    skipped_folders: list[dict]
    vanished: list[str]  # stored paths under a scanned folder that this run did not find
    images: list[str]  # every image found (all shards'), as stored


def _check_label_columns(table: pd.DataFrame, labels: str | os.PathLike) -> None:
    """Label columns named like a store column are stored as `label_<name>`; refuse a file where
    that new name is taken too (ParameterError("labels")), before any image is read."""
    reserved = (set(ITEM_COLUMNS) | set(OPTIONAL_COLUMNS)) - {"path"}
    taken = [c for c in table.columns if c in reserved and f"label_{c}" in table.columns]
    if taken:
        raise ParameterError("labels", f"{labels}: columns {', '.join(taken)} would be stored as "
                                       f"{', '.join('label_' + c for c in taken)}, which the file has too; rename one")


def _gone(path: str) -> bool:
    """True only when `path` does not exist: a file in a folder that could not be listed
    (permissions, a flaky mount) keeps its vector."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _relpath(f: Path, dirs: list[Path]) -> str:
    """`f` relative to the first of the scanned folders `dirs` that holds it (its name when none
    does: a file given as a root), '/'-separated, as stored."""
    rel = next((f.relative_to(d) for d in dirs if f.is_relative_to(d)), Path(f.name))
    return display_path(rel.as_posix())


def _plan(roots: list[Path], store: Store, shard: Shard | None = None) -> _Plan:
    """Sort every file under `roots` (of `shard` only, when given) into an outcome to come
    (task), unchanged or not an image, and list the stored paths under the scanned folders
    that are gone (of `shard` only, by their stored relpath)."""
    found = scan_images(roots)
    dirs = [absolute(r if r.is_dir() else r.parent) for r in roots]
    mine, not_images = found.images, found.not_images
    if shard is not None:
        mine = [f for f in mine if shard.owns(_relpath(f, dirs))]
        not_images = [f for f in not_images if shard.owns(_relpath(f, dirs))]
    known = store.known_files()
    # a skipped file is tried again on every run (its cause may be gone: permissions, a higher
    # max_pixels), except for a file name artenc cannot store, which no setting changes
    settled = (known["row"].to_numpy() >= 0) | (known["error"].astype(str).to_numpy() == NAME_PROBLEM)
    by_path = {p: (s, m) for p, s, m in zip(known["path"][settled], known["size"][settled],
                                            known["mtime_ns"][settled], strict=True)}
    tasks, unchanged = [], 0
    for f in mine:
        name = display_path(f)
        try:
            st = f.stat()
            if by_path.get(name) == (st.st_size, st.st_mtime_ns):
                unchanged += 1
                continue
        except OSError:
            pass  # unreadable: the worker records why

        tasks.append(FileTask(name, _relpath(f, dirs), "" if name == str(f) else str(f), name_problem(f)))
    images = {display_path(f) for f in found.images}
    scanned = [str(absolute(r)) + os.sep for r in roots if r.is_dir()]
    vanished = [p for p, rel in zip(known["path"], known["relpath"], strict=True)
                if p not in images and any(p.startswith(d) for d in scanned)
                and (shard is None or shard.owns(str(rel))) and _gone(p)]
    return _Plan(tasks, unchanged, [display_path(f) for f in not_images],
                 [{"path": display_path(d), "reason": why} for d, why in found.skipped_folders], vanished,
                 sorted(images))


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
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    flush_every: int = 1024,
    encoder: Encoder | None = None,
    progress: bool = True,
    trim_borders: bool | None = None,
    quality: bool = True,
    shard: Shard | tuple[int, int] | str | None = None,
    dtype: str | None = None,
) -> EmbedReport:
    """Embed every image under `roots` into the store at `out` (`artenc.embed`); resumable.

    Args:
        roots: image files and/or folders (searched recursively; hidden files skipped).
        out: the store folder (created, or extended when it holds the same model's vectors).
        model: a backbone name (`artenc.list_models()`, any timm name, `open_clip:ARCH/PRETRAINED`)
            or the path of an encoder exported by `artenc.train`; weights: a local weights file.
        labels: a CSV with a `path` column (relative to a root, or absolute) and label columns.
        batch_size: images per model call; workers: decoding processes (0: in this process);
            device: "auto" | "cpu" | "cuda"; runtime: "auto" | "torch" | "onnx" | "onnx-int8" (INT8 ONNX
            Runtime, `runtime.quantize_onnx`; a store holds float32 or int8 vectors, never both:
            "auto" adopts an existing store's, `runtime.runtime_for_store`).
        max_pixels: decompression-bomb guard, width * height in pixels (larger files are skipped).
        max_aspect_ratio: long side / short side above which a file is skipped (too thin for a
            centre crop; `images.check_geometry`); None: no limit.
        flush_every: a segment is committed at the end of the batch that brings the uncommitted
            images to flush_every or more (segments are whole batches: one per batch when
            flush_every <= batch_size); a kill loses at most flush_every - 1 + batch_size images.
        encoder: an already built `Encoder` (overrides model/weights/device/runtime).
        trim_borders: crop uniform letterbox bars before the centre crop (None: the model's choice).
        quality: measure each image's quality scores while decoding it (`artenc.quality`:
            brightness, blur, entropy, colourfulness, borders; a few ms per image on a 256-px
            thumbnail) and store them with the items (`Collection.quality` flags them).
        shard: embed only job I's share of N (`(I, N)`, "I/N", or "auto" inside a SLURM array
            job; `artenc.shards`): N such runs, at once or not, on one store embed every file
            once; the counts of the report are the share's. Join them with `Store.merge`.
        dtype: how a new store keeps its vectors, "float32" or "float16" (half the disk and
            page cache; arithmetic stays float32); None: float32, or an existing store's own.

    Returns:
        `EmbedReport`: counts (discovered = embedded + reused + unchanged + skipped +
        not_images; removed; total), seconds, images per second, every skipped file with its
        reason, every file that is not an image, folders not scanned, files removed because
        they vanished, and labels CSV rows that name no image.

    Raises:
        UsageError: a missing root; ParameterError: a bad batch_size, flush_every, workers,
        max_aspect_ratio (below 1), device, runtime, shard or labels file; StoreError: the store holds
        another model's vectors or another dtype; ParameterError("dtype"): not float32/float16;
        WeightsUnavailableError: weights not found offline.

    Vectors are float32, L2-normalised, from the model's own preprocessing (see the module
    docstring); files whose size and mtime are unchanged are not read again. Unreadable
    files never raise: they are skipped and listed (`report.total == 0` when none could be
    read; the embed command then exits 2).
    """
    if batch_size < 1:
        raise ParameterError("batch_size", f"must be >= 1, got {batch_size}")
    if flush_every < 1:
        raise ParameterError("flush_every", f"must be >= 1, got {flush_every}")
    check_max_aspect_ratio(max_aspect_ratio)  # before any work
    shard = parse_shard(shard)
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ParameterError("workers", f"must be >= 0, got {workers}")
    root_paths = [Path(r) for r in roots]
    for r in root_paths:
        if not r.exists():
            raise UsageError(f"{r}: no such file or folder")
    if labels:
        _check_label_columns(read_labels_table(labels), labels)  # a bad labels file fails before any work

    start = time.monotonic()
    if encoder is None and (Path(out) / "meta.json").is_file():  # an existing store: its quantization rules
        runtime, device = runtime_for_store(Store.open(out).meta, runtime, device, where=str(out))
    encoder = encoder or create_encoder(model, weights, device=device, runtime=runtime, trim_borders=trim_borders)
    store = Store.create(out, encoder.signature, dtype=dtype)
    store.start_writing()  # no other process compacts the store until this run ends
    try:
        if shard is not None:
            store.check_shard_count(shard)
            store.record_shard(shard, {"state": "running", "host": socket.gethostname(), "pid": os.getpid(),
                                       "started": time.time()})
        plan = _plan(root_paths, store, shard)
        tasks, unchanged = plan.tasks, plan.unchanged
        report = EmbedReport(store=str(out), discovered=len(tasks) + unchanged + len(plan.not_images),
                             unchanged=unchanged, runtime=encoder.runtime, device=encoder.device,
                             model=encoder.signature.model, not_images=len(plan.not_images),
                             not_image_files=plan.not_images, skipped_folders=plan.skipped_folders)
        log.info("%d images found: %d unchanged, %d to embed; %d other %s (%s on %s)",
                 len(tasks) + unchanged, unchanged, len(tasks), report.not_images,
                 "file is not an image" if report.not_images == 1 else "files are not images",
                 encoder.runtime, encoder.device)
        for f in plan.skipped_folders:
            log.warning("folder skipped %s: %s", f["path"], f["reason"])

        existing = store.items
        source = store.snapshot()  # `existing`'s rows keep their vectors here while `store` gains segments
        hash_to_row = {h: i for i, h in enumerate(existing["sha256"])} if len(existing) else {}
        dataset = DecodeDataset(tasks, encoder.preprocess, max_pixels, frozenset(hash_to_row), quality,
                                max_aspect_ratio)
        columns = BASE_COLUMNS + list(SCORE_COLUMNS)
        stored_scores = [c for c in SCORE_COLUMNS if c in existing.columns]
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
                frame = pd.DataFrame(rows, columns=columns)
                block = np.concatenate(vecs) if vecs else np.zeros((0, store.dim), np.float32)
                store.append_segment(frame, block)
            rows, vecs, n_vec = [], [], 0

        try:
            with Progress(len(tasks), "embed", enabled=progress) as bar:
                for records, pixels in loader:
                    out_vecs = encoder.encode(batch_pixels(pixels)) if pixels is not None else None
                    k = 0
                    for r in records:
                        row = {c: r.get(c) for c in BASE_COLUMNS}
                        row.update(r["stats"] or dict.fromkeys(SCORE_COLUMNS, np.nan))
                        if r["has_pixels"]:
                            vecs.append(out_vecs[k : k + 1])
                            k += 1
                            row["row"] = n_vec
                            n_vec += 1
                            report.embedded += 1
                        elif r["error"] is None and r["sha256"] in hash_to_row:
                            src = hash_to_row[r["sha256"]]
                            vecs.append(source.vectors_at([src]))
                            row["width"], row["height"] = (int(existing["width"][src]), int(existing["height"][src]))
                            row.update({c: float(existing[c][src]) for c in stored_scores})
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

        if plan.vanished:  # after the loop: a moved file reuses its old vector first
            report.removed = store.remove(plan.vanished)
            report.removed_files = plan.vanished
            for path in plan.vanished:
                log.info("removed from the store (file gone): %s", path)
        if shard is None:
            store.compact_if_worth_it()  # a shard leaves it to `Store.merge`; little added: nothing rewritten
            store.forget_shards()  # this run covered every file: earlier shard records no longer apply
        if labels:
            # a shard matches the labels against every image found (all shards'), so that every
            # shard writes the same table whenever it ends
            names = store.known_files()["path"]
            if shard is not None:
                names = sorted(set(names) | set(plan.images))
            matched = match_labels(labels, root_paths, names)
            store.set_labels(matched.table)
            missing = len(set(store.items["path"]) - set(matched.table["path"]))
            if missing:
                log.warning("%d embedded images have no row in %s", missing, labels)
            report.unmatched_label_rows = matched.unmatched
            report.unmatched_labels = len(matched.unmatched)
            for row in matched.unmatched:
                log.warning("label row matches no image: %s", row)
        store.reload()
        report.total = len(store)
        report.seconds = round(time.monotonic() - start, 3)
        done = report.embedded + report.reused
        report.images_per_second = round(done / report.seconds, 2) if report.seconds else 0.0
        record = {"outcomes": report.outcomes(), "not_image_files": report.not_image_files,
                  "removed_files": report.removed_files, "skipped_folders": report.skipped_folders,
                  "unmatched_label_rows": report.unmatched_label_rows}
        if shard is None:
            store.record_last_embed(record)
        else:
            store.record_shard(shard, {"state": "finished", "host": socket.gethostname(), "pid": os.getpid(),
                                       "seconds": report.seconds, **record})
    finally:
        store.stop_writing()  # also when the run fails: the mark must not outlive it
    log.info("%d files found: embedded %d, reused %d, unchanged %d, skipped %d, not images %d; removed %d "
             "gone; %d label rows unmatched; store %s now holds %d vectors (%.1f s)",
             report.discovered, report.embedded, report.reused, unchanged, report.skipped, report.not_images,
             report.removed, report.unmatched_labels, out, report.total, report.seconds)
    return report
