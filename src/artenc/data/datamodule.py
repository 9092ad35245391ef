"""LightningDataModule over a labels CSV (`path` + label columns) and an image folder, or an
unlabelled image folder (`labels=None`: self-supervised losses such as NT-Xent).

Two modes:
- `cache`: backbone features are computed once (clean view + `cache_views` augmented
  views per image, on disk) and batches hold features (N, V, D) float. Use it with a
  frozen backbone: an epoch costs only the head's compute.
- `full`: images are decoded and augmented on the fly and batches hold uint8 views
  (N, V, 3, H, W); the LightningModule runs the backbone. Use it on a GPU, for fresh
  augmentations every epoch, or when the backbone is not frozen.
Validation always uses the clean view (V = 1). Labels are (N, F) int64 codes, -1 missing
(F = 0 for an unlabelled folder).

With the last `trainable` backbone stages training, the cache holds the input of the first of
them (`ActivationEncoder`); with `head_epochs` > 0 the first `head_epochs` training epochs get
the backbone features instead, computed once from those activations by the stages at their
pretrained weights (the head trains alone first, then the stages join it), so those epochs
cost what a frozen backbone's do.

Reproducibility: building the feature cache draws no random number the training sees (the
RNG states are restored after it, `preserved_rng`), so a cold and a warm cache give the same
run; the train/validation split can be written to and read back from a file (`split_file`,
the run folder's `split.csv`), so a resumed run validates on the same rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from artenc.atomic import atomic_write_text
from artenc.backbones import Backbone
from artenc.data.augment import MultiView
from artenc.data.feature_cache import ActivationEncoder, CropDataset, ViewFn, cached_view_features
from artenc.data.splits import SplitSpec
from artenc.errors import UsageError
from artenc.images import load_image, scan_images
from artenc.labels import encode_labels, in_split, read_labels
from artenc.preprocess import PreprocessConfig
from artenc.runtime import encoder_from_backbone

log = logging.getLogger(__name__)
Mode = Literal["cache", "full"]
SPLIT_COLUMNS = ("path", "subset")
"""The columns of a split file: the image path (relative to the data root when under it)
and `train` or `val`."""


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run the block without disturbing the global RNGs the training reads (torch CPU,
    NumPy, Python `random`): their states are restored afterwards. Used around feature-cache
    building, whose DataLoaders draw seeds from torch's RNG only when the cache is cold."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class FeatureViewsDataset(Dataset):
    """Cached features (N, C, D): item i -> (V views drawn from the C cached ones, labels (F,))."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, views: int, sample: bool = True) -> None:
        self.features, self.labels, self.views, self.sample = features, labels, views, sample

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_cached = self.features.shape[1]
        if self.sample:
            pick = torch.randperm(n_cached)[: self.views] if n_cached >= self.views else torch.randint(n_cached, (self.views,))
        else:
            pick = torch.arange(self.views)
        x = torch.from_numpy(self.features[i, pick.numpy()].astype(np.float32))
        return x, torch.from_numpy(self.labels[i])


class ImageViewsDataset(Dataset):
    """Images: item i -> (uint8 views (V, 3, H, W), labels (F,)); `views` maps PIL -> (V,3,H,W)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, views: ViewFn) -> None:
        self.paths, self.labels, self.views = list(paths), labels, views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.views(load_image(self.paths[i]))), torch.from_numpy(self.labels[i])


class CleanViewDataset(Dataset):
    """Images: item i -> (uint8 clean view (1, 3, S, S) by `images.decode_crop`, labels (F,))."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, preprocess: PreprocessConfig) -> None:
        self.crops, self.labels = CropDataset(paths, preprocess), labels

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.crops[i][None]), torch.from_numpy(self.labels[i])


class ContrastiveDataModule(L.LightningDataModule):
    """See the module docstring. `include` keeps only rows whose column value is listed
    (e.g. `{"split": ["dev"]}`): other rows are dropped when the CSV is read and never used.
    `labels=None` (with no `label_fields`): every image under `root`, no labels (F = 0).
    `split_file`: where the train/validation split is written (`path,subset`), and read
    back instead of recomputed when `reuse_split` (a resumed run; `split_rows`)."""

    def __init__(
        self, root: str, labels: str | None, label_fields: Sequence[str], split: SplitSpec,
        augment: ViewFn, backbone: Backbone | None = None,
        include: Mapping[str, Sequence[str]] | None = None, mode: Mode = "cache", views: int = 2,
        cache_views: int = 4, cache_dir: str | None = None, batch_size: int = 256, num_workers: int = 0,
        feature_batch_size: int = 64, feature_runtime: str = "auto", device: str = "auto", seed: int = 0,
        split_file: str | os.PathLike | None = None, reuse_split: bool = False,
        trainable: int = 0, head_epochs: int = 0,
    ) -> None:
        super().__init__()
        if mode not in ("cache", "full"):
            raise ValueError(f"mode must be 'cache' or 'full', got {mode!r}")
        if head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {head_epochs}")
        if views < 1 or cache_views < 0 or batch_size < 1:
            raise ValueError("views >= 1, cache_views >= 0 and batch_size >= 1 are required")
        if labels is not None and not label_fields:
            raise ValueError("label_fields must name at least one label column, e.g. [style]")
        if labels is None and label_fields:
            raise ValueError(f"label_fields {list(label_fields)} need a labels CSV (labels=None: an unlabelled folder)")
        self.root, self.labels_csv = Path(root), None if labels is None else Path(labels)
        self.label_fields, self.split, self.augment = list(label_fields), split, augment
        self.backbone = backbone  # the built frozen backbone (train() passes it in)
        self.trainable = trainable  # last stages of the backbone that train (train() passes it in)
        self.head_epochs = head_epochs  # first epochs that train the head alone (train() passes it in)
        self.include = {k: [str(v) for v in vs] for k, vs in (include or {}).items()}
        self.mode, self.views, self.cache_views, self.cache_dir = mode, views, cache_views, cache_dir
        self.batch_size, self.num_workers = batch_size, num_workers
        self.feature_batch_size, self.feature_runtime, self.device, self.seed = (
            feature_batch_size, feature_runtime, device, seed)
        self.split_file = None if split_file is None else Path(split_file)
        self.reuse_split = reuse_split
        self.table: pd.DataFrame | None = None
        self.classes: dict[str, list[str]] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.head_train_set: Dataset | None = None  # features for the head-only epochs (cache mode)
        self._feature_encoder = None

    # ----- table -----------------------------------------------------------------------
    def read_table(self) -> pd.DataFrame:
        """The labels CSV, restricted to `include` rows whose image exists; without a labels
        CSV, the images under `root` (`images.scan_images`, sorted), a `path` column only."""
        if not self.root.exists():
            raise UsageError(f"{self.root}: image root not found (set data.root=...)")
        if self.labels_csv is None:
            found = [str(p) for p in scan_images([self.root]).images]
            if not found:
                raise UsageError(f"{self.root}: no image found")
            return pd.DataFrame({"path": found})
        df = read_labels(self.labels_csv, [self.root])
        for column, allowed in self.include.items():
            if column not in df.columns:
                raise UsageError(f"{self.labels_csv}: no column {column!r} to filter on (data.include)")
            df = df[in_split(df[column], allowed)]
        missing = [f for f in self.label_fields if f not in df.columns]
        if missing:
            raise UsageError(f"{self.labels_csv}: no label column {missing} (columns: {', '.join(df.columns)})")
        exists = df["path"].map(lambda p: Path(p).is_file())
        if not exists.all():
            log.warning("%d rows of %s have no image file; ignored", int((~exists).sum()), self.labels_csv)
        df = df[exists].reset_index(drop=True)
        if df.empty:
            raise UsageError(f"{self.labels_csv}: no usable row (after data.include={self.include})")
        return df

    def _encoder(self):
        """The backbone as an Encoder (ONNX Runtime on CPU), built once."""
        if self.backbone is None:
            raise ValueError("the DataModule needs the built backbone: ContrastiveDataModule(..., backbone=...)")
        if self._feature_encoder is None and self.trainable:
            self._feature_encoder = self._activation_encoder()
        if self._feature_encoder is None:
            self._feature_encoder = encoder_from_backbone(self.backbone, device=self.device, runtime=self.feature_runtime)
        return self._feature_encoder

    def _activation_encoder(self) -> ActivationEncoder:
        """With the last `trainable` stages training, the cache holds the input of the first
        of them (plus the frozen statistics), computed by torch (`ActivationEncoder`)."""
        log.info("feature cache: activations at the input of the last %d backbone stage(s)", self.trainable)
        return ActivationEncoder(self.backbone, self.trainable)

    def _features(self, paths: Sequence[str]) -> np.ndarray:
        return cached_view_features(paths, self._encoder(), self.augment, self.cache_views, self.cache_dir,
                                    self.seed, self.feature_batch_size, self.num_workers)

    def _features_from_activations(self, activations: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Cached activations (N, V, M) float16 -> backbone features (N, V, D) float16, by the
        trainable stages at their current (pretrained) weights, in eval mode
        (`StagedFeatures.unit_features`, the same function training and export use)."""
        staged, model = self._encoder().staged, self.backbone.model
        n, v = activations.shape[:2]
        flat = activations.reshape(n * v, -1)
        out = np.empty((n * v, staged.dim), np.float16)
        was = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(flat), batch_size):
                    chunk = torch.from_numpy(flat[start:start + batch_size].astype(np.float32))
                    out[start:start + batch_size] = staged.unit_features(chunk).numpy()
        finally:
            model.train(was)
        return out.reshape(n, v, staged.dim)

    def in_head_phase(self) -> bool:
        """Whether the coming training epoch is one of the first `head_epochs` (head alone) and
        this data module serves features for it (cache mode with trainable stages)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self.head_train_set is not None and epoch < self.head_epochs

    # ----- Lightning hooks -------------------------------------------------------------
    def prepare_data(self) -> None:
        """Fill the feature cache once (rank 0 of each node) in cache mode."""
        if self.mode == "cache" and self.train_set is None:  # validate() after fit: already loaded
            with preserved_rng():
                self._features(list(self.read_table()["path"]))

    def _split_key(self, path: str) -> str:
        """A table path as written in the split file: relative to the data root when under it."""
        root = os.path.abspath(self.root)
        return os.path.relpath(path, root) if os.path.abspath(path).startswith(root + os.sep) else path

    def split_rows(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (train, val) of `df`: read from `split_file` when `reuse_split` and
        the file exists (rows it does not list are left out, with a warning), else by `split`
        (`SplitSpec.apply`) and written to `split_file` when one is set.

        Raises:
            UsageError: the split file has not the columns `path`, `subset`, or no listed
                row is in the table.
        """
        keys = np.array([self._split_key(p) for p in df["path"]], dtype=object)
        if self.reuse_split and self.split_file is not None and self.split_file.is_file():
            saved = pd.read_csv(self.split_file, dtype=str, keep_default_na=False)
            if tuple(saved.columns) != SPLIT_COLUMNS:
                raise UsageError(f"{self.split_file}: a split file has the columns {', '.join(SPLIT_COLUMNS)}")
            subset = dict(zip(saved["path"], saved["subset"], strict=True))
            listed = np.array([k in subset for k in keys], dtype=bool)
            if not listed.all():
                log.warning("%d rows are not in %s (added since the run began): left out", int((~listed).sum()),
                            self.split_file)
            if not listed.any():
                raise UsageError(f"{self.split_file}: none of its rows is in the data")
            is_val = np.array([subset.get(k) == "val" for k in keys], dtype=bool)
            rows = np.arange(len(df))
            log.info("data: split read from %s", self.split_file)
            return rows[listed & ~is_val], rows[listed & is_val]
        train_rows, val_rows = self.split.apply(df)
        if self.split_file is not None:
            subset = np.full(len(df), "train", dtype=object)
            subset[val_rows] = "val"
            keep = np.sort(np.concatenate([train_rows, val_rows]))
            self.split_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.split_file, pd.DataFrame({"path": keys[keep], "subset": subset[keep]})
                              .to_csv(index=False))
        return train_rows, val_rows

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        with preserved_rng():
            self._setup()

    def _setup(self) -> None:
        df = self.read_table()
        codes, self.classes = encode_labels(df, self.label_fields)
        train_rows, val_rows = self.split_rows(df)
        self.table = df.assign(_val=np.isin(np.arange(len(df)), val_rows))
        log.info("data: %d train, %d validation rows (%s mode)", len(train_rows), len(val_rows), self.mode)
        if self.mode == "cache":
            feats = self._features(list(df["path"]))
            self.train_set = FeatureViewsDataset(feats[train_rows], codes[train_rows], self.views)
            self.val_set = FeatureViewsDataset(feats[val_rows], codes[val_rows], 1, sample=False)
            if self.trainable and self.head_epochs:
                log.info("data: features of %d training rows for the %d head-only epoch(s)", len(train_rows),
                         self.head_epochs)
                self.head_train_set = FeatureViewsDataset(self._features_from_activations(self.train_set.features),
                                                          codes[train_rows], self.views)
        else:
            paths = df["path"].to_numpy()
            if self.backbone is None:
                raise ValueError("full mode needs the backbone's preprocessing: pass backbone=...")
            self.train_set = ImageViewsDataset(paths[train_rows], codes[train_rows], MultiView(self.augment, self.views))
            self.val_set = CleanViewDataset(paths[val_rows], codes[val_rows], self.backbone.preprocess)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() first")
        workers = self.num_workers if self.mode == "full" else 0  # cached features: in memory
        drop_last = shuffle and len(dataset) > self.batch_size  # equal batches for DDP all_gather
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=workers, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training batches; backbone features during the head-only epochs (`in_head_phase`;
        the trainer reloads the loader after them: `reload_dataloaders_every_n_epochs`)."""
        return self._loader(self.head_train_set if self.in_head_phase() else self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
