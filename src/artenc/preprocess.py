"""Evaluation preprocessing: the exact resize/crop/normalise that a model's weights expect.

The config is a dataclass stored next to embeddings and inside exported encoders, so
extraction always normalises the way the weights were trained (cf. timm's
`transforms_factory`, open_clip's `PreprocessCfg`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Resize the short side to size/crop_pct, centre-crop `size`, scale to [0,1], normalise."""

    size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    trim_borders: bool = False  # crop dark letterbox bars before resizing (see `trim_borders`)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} unknown; use one of {sorted(_INTERPOLATIONS)}"
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def resize_to(self) -> int:
        """Short-side length before the centre crop (timm: floor(size / crop_pct))."""
        return math.floor(self.size / self.crop_pct + 1e-6)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        keys = {"size", "crop_pct", "interpolation", "mean", "std", "trim_borders"}
        kw = {k: v for k, v in d.items() if k in keys}
        for k in ("mean", "std"):
            if k in kw:
                kw[k] = tuple(float(x) for x in kw[k])
        return cls(**kw)


BAR_LEVEL = 12  # a letterbox bar is darker than this everywhere (JPEG noise included)


def trim_borders(img: Image.Image, level: int = BAR_LEVEL, min_keep: float = 0.3) -> Image.Image:
    """Crop dark bars at the edges (letterboxing: scans padded to a square with black).

    Keeps the bounding box of pixels brighter than `level`. Leaves the image alone when
    nothing is trimmed or when the box would keep less than `min_keep` of a side (a
    mostly dark painting, not a bar).
    """
    w, h = img.size
    bbox = img.convert("L").point(lambda v: 255 if v > level else 0).getbbox()
    if bbox is None:
        return img
    left, top, right, bottom = bbox
    if (right - left) < min_keep * w or (bottom - top) < min_keep * h or bbox == (0, 0, w, h):
        return img
    return img.crop(bbox)


def resize_and_crop(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Resize (short side to cfg.resize_to, aspect kept) and centre-crop to cfg.size.

    Matches torchvision's `Resize(int)` + `CenterCrop` on PIL images; with
    `cfg.trim_borders`, dark letterbox bars are cropped first.
    """
    if cfg.trim_borders:
        img = trim_borders(img)
    w, h = img.size
    target = cfg.resize_to
    if w <= h:
        new_w, new_h = target, int(target * h / w)
    else:
        new_w, new_h = int(target * w / h), target
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _INTERPOLATIONS[cfg.interpolation])
    size = cfg.size
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    if left < 0 or top < 0:  # tiny image: torchvision pads with zeros; do the same
        canvas = Image.new("RGB", (max(size, new_w), max(size, new_h)))
        canvas.paste(img, (max(0, -left), max(0, -top)))
        img, left, top = canvas, max(0, left), max(0, top)
    return img.crop((left, top, left + size, top + size))


def to_uint8_chw(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Preprocess to a uint8 array (3, size, size); normalisation happens in the model wrapper."""
    arr = np.asarray(resize_and_crop(img, cfg), dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def normalize_uint8(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 (N,3,H,W) -> float32 normalised, for code that feeds raw models."""
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return (batch.astype(np.float32) / 255.0 - mean) / std
