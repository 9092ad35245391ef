"""Backbone features computed once and kept on disk (`.npy`, float16, no pickle).

View 0 of every image is the backbone's evaluation preprocessing; views 1..n are seeded
augmentations, so the same config always gives the same cache. Each view is its own file,
written atomically, so an interrupted run resumes at the first missing view.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from artenc.atomic import atomic_save_npy
from artenc.backbones import Backbone
from artenc.backbones.weights import fingerprint_module
from artenc.images import decode_crop, load_image
from artenc.layers.stages import StagedFeatures
from artenc.preprocess import PreprocessConfig
from artenc.progress import Progress
from artenc.runtime import (
    EmbeddingModule,
    Encoder,
    _onnx_path,
    _onnx_sessions,
    export_onnx,
    resolve_device,
)
from artenc.store import ModelSignature, feature_cache_dir

log = logging.getLogger(__name__)
ViewFn = Callable[[Image.Image], np.ndarray]


def default_cache_dir() -> Path:
    """Where features are cached by default: `artenc.store.feature_cache_dir()`
    ($ARTENC_CACHE_DIR/features, default ~/.cache/artenc/features)."""
    return feature_cache_dir()


class SeededViewDataset(Dataset):
    """Decode image i and apply `view` under the torch seed (seed, i): uint8 (3, H, W)."""

    def __init__(self, paths: Sequence[str], view: ViewFn, seed: int | None = None) -> None:
        self.paths, self.view, self.seed = list(paths), view, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        img = load_image(self.paths[i])
        if self.seed is None:
            return self.view(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + i)
            return self.view(img)


class CropDataset(Dataset):
    """Item i: the clean view of image i, uint8 (3, S, S), by `images.decode_crop` (the same
    decoding and crop as `artenc embed`, so cached features match stored vectors)."""

    def __init__(self, paths: Sequence[str], preprocess: PreprocessConfig) -> None:
        self.paths, self.preprocess = list(paths), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return decode_crop(self.paths[i], self.preprocess).pixels


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


class FrozenPart(torch.nn.Module):
    """uint8 images (N, 3, S, S) -> packed activations (N, M) float32: normalisation as
    `EmbeddingModule`, then `StagedFeatures.pack(*frozen(x))` (an exportable graph)."""

    def __init__(self, staged: StagedFeatures, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.staged = staged
        self.norm = EmbeddingModule(torch.nn.Identity(), preprocess)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32) * self.norm.scale + self.norm.shift
        return self.staged.pack(*self.staged.frozen(x))


class ActivationEncoder:
    """Encoder-like (`encode`, `preprocess`, `signature`, as `cached_view_features` needs):
    uint8 images (N, 3, S, S) -> (N, M) rows `StagedFeatures.pack(*frozen(x))`, the input of
    the first trainable stage of `backbone` plus the statistics of frozen layers.

    On the CPU the frozen part runs in ONNX Runtime (exported once per fingerprint, like
    `artenc.runtime`; about 10x faster than torch there), else in torch. Its fingerprint covers
    the weights of the frozen stages and the cut (`StagedFeatures.describe`), not the trainable
    stages, so the cache stays valid while they train.
    """

    def __init__(self, backbone: Backbone, trainable: int, runtime: str = "auto") -> None:
        self.backbone = backbone
        self.staged = StagedFeatures(backbone.model, trainable)
        self.module = FrozenPart(self.staged, backbone.preprocess).eval()
        frozen = torch.nn.ModuleList(self.staged.frozen_modules())
        fingerprint = f"{fingerprint_module(frozen)}-cut-{_digest(self.staged.describe())[:12]}"
        size = backbone.preprocess.size
        self._sessions = None
        dim = int(self._torch(np.zeros((1, 3, size, size), np.uint8)).shape[1])
        self.signature = ModelSignature(model=f"{backbone.name}-frozen-part", fingerprint=fingerprint,
                                        preprocess=backbone.preprocess.to_dict(), dim=dim, weights=None)
        if runtime == "onnx" or (runtime == "auto" and resolve_device("auto") == "cpu"):
            try:
                path = _onnx_path(self.signature)
                if not path.is_file():
                    log.info("exporting the frozen part of %s to ONNX: %s", backbone.name, path)
                    with _eval(backbone.model):
                        export_onnx(self.module, size, path)
                self._sessions = _onnx_sessions(path, torch.get_num_threads())[:1]
            except ImportError as exc:
                log.warning("ONNX Runtime unavailable (%s); the frozen part runs in torch", exc)

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.backbone.preprocess

    def _torch(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), _eval(self.backbone.model):
            return self.module(torch.from_numpy(batch)).numpy()

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, 3, S, S) -> (N, M) float32 packed activations."""
        if self._sessions:
            return self._sessions[0].run(None, {"images": np.ascontiguousarray(batch)})[0]
        return self._torch(batch)


class _eval:
    """Context: `module` in eval mode inside, its previous mode restored after."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.was = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was)


def cache_key(paths: Sequence[str], encoder: Encoder) -> str:
    """Digest of the files (path, size, mtime), the backbone weights and its preprocessing."""
    files = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    return _digest({"files": files, "fingerprint": encoder.signature.fingerprint,
                    "preprocess": encoder.signature.preprocess})


def _encode_view(dataset: Dataset, encoder: Encoder, batch_size: int, workers: int, desc: str) -> np.ndarray:
    """Encode a dataset of uint8 (3, S, S) views: (N, D) float16 features."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=np.stack)
    out = []
    with Progress(len(dataset), desc) as bar:
        for batch in loader:
            out.append(encoder.encode(batch).astype(np.float16))
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, encoder.signature.dim), np.float16)


def cached_view_features(
    paths: Sequence[str], encoder: Encoder, augment: ViewFn | None, n_augmented: int,
    root: str | os.PathLike | None = None, seed: int = 0, batch_size: int = 64, workers: int = 0,
) -> np.ndarray:
    """Features (N, 1 + n_augmented, D) float16 of `paths`: view 0 clean, then augmented views.

    Computed on first use and stored under `root/<key>/`: `clean.npy`, and
    `aug-<augment digest>-s<seed>-<v>.npy` per augmented view (so changing the
    augmentations or their number reuses the clean view and the views already there).
    """
    if n_augmented > 0 and augment is None:
        raise ValueError("n_augmented > 0 needs an augment transform")
    folder = Path(root or default_cache_dir()) / cache_key(paths, encoder)
    folder.mkdir(parents=True, exist_ok=True)
    aug_id = _digest(repr(augment))[:12]
    views = []
    for v in range(1 + n_augmented):
        path = folder / ("clean.npy" if v == 0 else f"aug-{aug_id}-s{seed}-{v:03d}.npy")
        if not path.is_file():
            if v == 0:
                dataset = CropDataset(paths, encoder.preprocess)
            else:
                dataset = SeededViewDataset(paths, augment, seed=seed * 1000 + v)
            log.info("feature cache: computing view %d/%d of %d images -> %s", v, n_augmented, len(paths), path)
            feats = _encode_view(dataset, encoder, batch_size, workers, f"features view {v}")
            atomic_save_npy(path, feats)
        views.append(np.load(path, allow_pickle=False))
    return np.stack(views, axis=1)
