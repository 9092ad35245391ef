"""Evaluation preprocessing: the exact resize/crop/normalise that a model's weights expect.

The config is a dataclass stored next to embeddings and inside exported encoders, so
extraction always normalises the way the weights were trained (cf. timm's
`transforms_factory`, open_clip's `PreprocessCfg`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np
from PIL import Image

from artenc.errors import ParameterError

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


# Pixels that resizing the whole image may allocate (Pillow's horizontal pass, new_w x height,
# plus the resized image, new_w x new_h) before the box path takes over; 2**24 pixels = 48 MiB RGB.
FULL_RESIZE_LIMIT = 1 << 24


@dataclass(frozen=True)
class CropPlan:
    """The centre crop of one image under a `PreprocessConfig` (see `crop_plan`).

    resized: (width, height) of torchvision's `Resize(resize_to)` of the whole image.
    window: (left, top, right, bottom) of the crop inside the resized image, clipped to it.
    box: the same window in source-pixel coordinates (floats).
    offset: where the window lands in the `out` x `out` output (non-zero only with padding).
    full_resize: True when the whole image is resized and then cropped (the exact reference
        path); False when only `box` is resampled to the window's size (the bounded path).
    """

    resized: tuple[int, int]
    window: tuple[int, int, int, int]
    box: tuple[float, float, float, float]
    offset: tuple[int, int]
    out: int
    full_resize: bool

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the crop window, the largest image resampling makes on either path
        besides Pillow's own row buffer."""
        left, top, right, bottom = self.window
        return right - left, bottom - top


def crop_plan(width: int, height: int, cfg: PreprocessConfig) -> CropPlan:
    """Where the centre crop of a `width` x `height` image lies, and how it will be resampled.

    Geometry of torchvision's `Resize(cfg.resize_to)` + `CenterCrop(cfg.size)`: short side to
    `resize_to`, the long side truncated to an int, crop offsets rounded, zero padding where
    the resized image is smaller than the crop. `full_resize` is False when resizing the
    whole image would allocate more than `FULL_RESIZE_LIMIT` pixels (aspect ratios beyond
    about 1:250). Raises ParameterError for an empty image.
    """
    if width < 1 or height < 1:
        raise ParameterError("width", f"and height must be >= 1 pixel, got {width}x{height}")
    target, out = cfg.resize_to, cfg.size
    if width <= height:
        new_w, new_h = target, int(target * height / width)
    else:
        new_w, new_h = int(target * width / height), target
    left, top = int(round((new_w - out) / 2.0)), int(round((new_h - out) / 2.0))
    x0, x1 = max(left, 0), min(left + out, new_w)
    y0, y1 = max(top, 0), min(top + out, new_h)
    sx, sy = width / new_w, height / new_h
    return CropPlan(
        resized=(new_w, new_h), window=(x0, y0, x1, y1), box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy),
        offset=(x0 - left, y0 - top), out=out, full_resize=new_w * (height + new_h) <= FULL_RESIZE_LIMIT,
    )


def _dyadic(x: Fraction) -> bool:
    """x = m / 2**k with m < 2**20: products with pixel coordinates are exact in float64."""
    return x.denominator & (x.denominator - 1) == 0 and x.numerator < 1 << 20


def _box_path_exact(plan: CropPlan, width: int, height: int) -> bool:
    """True when resampling only `plan.box` gives exactly the pixels of resize-then-crop.

    Pillow places output pixel i of a resample at source coordinate in0 + (i + 0.5) * scale, with
    in0 = 0 and scale = width / resized width when resizing the whole image, and in0 = box left,
    scale = box width / window width on the box path (likewise vertically); the filter window is
    clipped to the whole source on both. Both give the same float64 numbers, hence the same taps
    and pixels, when each axis' scale is a dyadic fraction (side / resize_to with resize_to a
    power of two, as 256, for a square image) and the window is not padded; taken for square
    images only, where tests/test_preprocess_exact.py checks it on many sizes."""
    if plan.size != (plan.out, plan.out) or width != height:  # measured exact on squares only:
        return False  # a 64 x 900 image (both scales 1/4) still differs by 1 level in 0.3 % of pixels
    return _dyadic(Fraction(width, plan.resized[0])) and _dyadic(Fraction(height, plan.resized[1]))


def resize_and_crop(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Resize (short side to cfg.resize_to, aspect kept) and centre-crop: RGB, cfg.size x cfg.size.

    Same result as torchvision's `Resize(int)` + `CenterCrop` on PIL images; with
    `cfg.trim_borders`, dark letterbox bars are cropped first. Memory stays bounded for any
    geometry: when resizing the whole image would allocate more than `FULL_RESIZE_LIMIT`
    pixels (a 1 x 10,000 image would become 256 x 2,560,000), only the crop's box of the
    source is resampled, straight to the output size (Pillow `Image.resize(size, resample,
    box=...)`; see `crop_plan`). `images.decode_crop` refuses images beyond
    `artenc.defaults.MAX_ASPECT_RATIO` (1:100) before decoding them, so the box path serves
    callers that lift that limit. Ordinary aspect ratios keep the resize-then-crop path: the
    box path computes the same filter taps up to float rounding, which flips some pixels by
    a few levels and would move vectors past the golden-test tolerance (tests/golden.py),
    except where that arithmetic is exact (`_box_path_exact`: square images, among others), where
    the box path gives the same pixels for a sixth less work (no rows and columns outside the crop).
    """
    if cfg.trim_borders:
        img = trim_borders(img)
    plan = crop_plan(*img.size, cfg)
    resample = _INTERPOLATIONS[cfg.interpolation]
    if not plan.full_resize or _box_path_exact(plan, *img.size):
        part = img.resize(plan.size, resample, box=plan.box)
    else:
        resized = img if plan.resized == img.size else img.resize(plan.resized, resample)
        part = resized.crop(plan.window)
    if plan.size == (plan.out, plan.out):
        return part
    canvas = Image.new("RGB", (plan.out, plan.out))  # tiny image: torchvision pads with zeros
    canvas.paste(part, plan.offset)
    return canvas


def to_uint8_chw(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Preprocess to a uint8 array (3, size, size); normalisation happens in the model wrapper."""
    arr = np.asarray(resize_and_crop(img, cfg), dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def normalize_uint8(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 (N,3,H,W) -> float32 normalised, for code that feeds raw models."""
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return (batch.astype(np.float32) / 255.0 - mean) / std
