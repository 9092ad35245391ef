"""Image quality: pixel statistics measured once while embedding, and the flags drawn from them.

`image_stats` runs inside the one decode path (`artenc.images.decode_crop(..., quality=True)`,
called by `artenc embed`) on the image already decoded in memory, reduced to a thumbnail of
`THUMBNAIL_SIDE` px on its long side, so a store holds its works' quality scores with no
second pass over the files. `quality_flags` turns the stored scores (and the stored width and
height) into one flag per issue with thresholds the user can change (`QualityThresholds`,
defaults in `artenc.defaults`); `quality_report` ranks the flagged works worst first
(`Collection.quality`). Flags after cleanvision's issue types (dark, light, blurry,
low_information, odd_aspect_ratio, odd_size, grayscale; https://github.com/cleanlab/cleanvision).

Scores stored per work (item columns, float; `SCORE_COLUMNS`), measured on the picture inside
any uniform border bars (the bars have their own score; see `image_stats`), all on the thumbnail
(for an image smaller than the thumbnail, the colour scores on the image itself: see `image_stats`):

- ``brightness``: mean luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B), 0 (black) .. 1 (white).
- ``darkness``: share of pixels with luma below `NEAR_BLACK` (0.1), 0..1.
- ``overexposure``: share of pixels with luma above `NEAR_WHITE` (0.95), 0..1.
- ``sharpness``: variance of the 3x3 Laplacian (OpenCV's `Laplacian(ksize=1)`; Pech-Pacheco et
  al. 2000) of the grey thumbnail, in squared grey levels (0..255 scale). The thumbnail always
  has `THUMBNAIL_SIDE` px on its long side (larger images reduced, smaller ones enlarged), so
  the score measures blur relative to the picture's own extent: the same work scanned at 4,000
  and at 1,000 px scores alike. Low = blurry.
- ``entropy``: Shannon entropy of the 256-bin grey histogram, bits, 0 (one grey level) .. 8.
- ``colourfulness``: Hasler & Süsstrunk 2003 ("Measuring colourfulness in natural images",
  SPIE 5007), M = sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2) with rg = R - G,
  yb = (R + G) / 2 - B on the 0..255 scale: 0 for grey, ~15 "slightly", ~33 "moderately",
  ~59 "quite", 100+ "extremely" colourful.
- ``hue``: chroma-weighted circular mean hue, degrees 0..360 (0 red, 30 orange-brown, 60
  yellow, 120 green, 240 blue); 0 when the picture has no chroma.
- ``hue_spread``: chroma-weighted circular standard deviation of the hue, degrees
  (sqrt(-2 ln R), R the mean resultant length; Mardia & Jupp 2000): near 0 for one tint
  (sepia, cyanotype), tens of degrees for a palette; 0 without chroma.
- ``tone_residual``: share of the chroma energy (sum of rg^2 + yb^2) that luminance does not
  explain: chroma minus its mean over the pixels of the same luminance band (32 bands of 8
  grey levels), squared, summed, over the total; 0..1. Near 0 when colour is a function of
  brightness: toned monochrome (sepia, cyanotype, red chalk or ink on tinted paper); 0.1 and
  more for a painting with a palette (WikiArt dev: 1st percentile 0.01). 0 without chroma; a
  greyscale scan's faint chroma is noise, so it scores high (`colourfulness` tells it apart).
- ``border_share``: share of the image area in uniform bars along its edges (letterboxing,
  mats, white scan margins), 0..1: a bar is a run of edge rows (columns) whose grey levels all
  lie within `artenc.preprocess.BAR_LEVEL` of the edge's median, the rule `trim_borders` uses
  for black bars, generalised to bars of any colour. 0 for an image uniform throughout (no
  picture between bars; `low_information` flags it).

Size scores come from the stored width and height, so old stores have them too:
``aspect_ratio`` (long side / short side, >= 1), ``megapixels`` (width * height / 1e6) and
``short_side`` (px).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
from PIL import Image

from artenc.defaults import (
    QUALITY_BLURRY_SHARPNESS,
    QUALITY_DARK_SHARE,
    QUALITY_GRAYSCALE_COLOURFULNESS,
    QUALITY_LOW_INFORMATION_ENTROPY,
    QUALITY_MAX_MEGAPIXELS,
    QUALITY_MIN_SIDE,
    QUALITY_ODD_ASPECT_RATIO,
    QUALITY_OVEREXPOSED_BRIGHTNESS,
    QUALITY_OVEREXPOSED_SHARE,
    QUALITY_SEPIA_HUE_RANGE,
    QUALITY_SEPIA_HUE_SPREAD,
    QUALITY_SEPIA_TONE_RESIDUAL,
    QUALITY_UNIFORM_BORDER_SHARE,
    SCORE_COLUMNS,
)
from artenc.errors import ParameterError
from artenc.preprocess import BAR_LEVEL

THUMBNAIL_SIDE = 256  # long side of the thumbnail every score is measured on (px)
NEAR_BLACK = 0.1  # luma below this counts as near-black (`darkness`), 0..1
NEAR_WHITE = 0.95  # luma above this counts as near-white (`overexposure`), 0..1
MIN_KEEP = 0.3  # scores are measured inside the bars only when the picture keeps this share of each side
# (`trim_borders`' min_keep: a small bright object on black is a dark image, not a picture in bars)
COLOUR_MIN_SIDE = 16  # colour scores use the thumbnail halved when its short side stays at least this (px)
MIN_CHROMA = 8.0  # pixels with less chroma (max - min of R, G, B; 0..255) carry no hue
NOT_COMPUTED = "not computed (re-embed)"  # the note of works whose pixel scores are not stored

FLAGS = ("dark", "overexposed", "blurry", "low_information", "odd_aspect_ratio", "odd_size", "grayscale",
         "sepia", "uniform_borders")
# per flag: the score that ranks its works and whether high values are worse
_RANK_BY = {"dark": ("darkness", True), "overexposed": ("overexposure", True), "blurry": ("sharpness", False),
            "low_information": ("entropy", False), "odd_aspect_ratio": ("aspect_ratio", True),
            "odd_size": ("size_excess", True), "grayscale": ("colourfulness", False),
            "sepia": ("tone_residual", False), "uniform_borders": ("border_share", True)}


# ----- pixel statistics (run while decoding) ---------------------------------------------
@dataclass(frozen=True)
class ImageStats:
    """The stored quality scores of one image (units in the module docstring); `to_dict()`
    keys are `SCORE_COLUMNS`."""

    brightness: float
    darkness: float
    overexposure: float
    sharpness: float
    entropy: float
    colourfulness: float
    hue: float
    hue_spread: float
    tone_residual: float
    border_share: float

    def to_dict(self) -> dict[str, float]:
        # the fields by name, in order, without `asdict`'s recursive deep copy (~10 us per image)
        return {f.name: getattr(self, f.name) for f in fields(self)}


def thumbnail(img: Image.Image, side: int = THUMBNAIL_SIDE) -> Image.Image:
    """`img` resized so its long side is `side` px (aspect kept, short side >= 1 px): reduced
    with Pillow's antialiased bilinear filter (`reducing_gap` 3 for speed), enlarged bilinearly."""
    w, h = img.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 1 else None)


def _bar_length(first: np.ndarray, line_max: np.ndarray, line_min: np.ndarray, level: int) -> int:
    """How many leading lines (their max and min grey levels `line_max`, `line_min`, outermost
    first) lie within `level` grey levels of the median of the outermost line `first` everywhere."""
    ref = _median_level(first)
    uniform = (line_max.astype(np.int16) - ref <= level) & (ref - line_min.astype(np.int16) <= level)
    return len(uniform) if uniform.all() else int(np.argmin(uniform))


def _median_level(values: np.ndarray) -> int:
    """int(np.median(values)) of uint8 `values`, exactly, without np.median's overhead (the mean
    of the two middle values of an even count, truncated)."""
    ordered, m = np.sort(values), len(values) // 2
    return int(ordered[m]) if len(values) % 2 else (int(ordered[m - 1]) + int(ordered[m])) // 2


def content_box(grey: np.ndarray, level: int = BAR_LEVEL) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the picture inside uniform bars along the edges of `grey`
    ((h, w) uint8), or None when bars from opposite edges meet (a uniform image).

    A bar: edge rows (columns) whose grey levels all lie within `level` of the median of the
    outermost row (column). For black bars this is `artenc.preprocess.trim_borders`' rule (a
    bar is darker than `BAR_LEVEL` everywhere), generalised to bars of any colour.
    """
    h, w = grey.shape
    rmax, rmin, cmax, cmin = grey.max(axis=1), grey.min(axis=1), grey.max(axis=0), grey.min(axis=0)
    top = _bar_length(grey[0], rmax, rmin, level)
    bottom = _bar_length(grey[-1], rmax[::-1], rmin[::-1], level)
    left = _bar_length(grey[:, 0], cmax, cmin, level)
    right = _bar_length(grey[:, -1], cmax[::-1], cmin[::-1], level)
    if top + bottom >= h or left + right >= w:
        return None
    return left, top, w - right, h - bottom


def _laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of `grey` ((h, w) uint8, edges replicated), from
    exact integer sums (the Laplacian of grey levels is an integer in [-1020, 1020])."""
    h, w = grey.shape
    p = np.empty((h + 2, w + 2), dtype=np.int16)  # `np.pad(mode="edge")` without its overhead
    p[1:-1, 1:-1] = grey
    p[0, 1:-1], p[-1, 1:-1] = grey[0], grey[-1]
    p[:, 0], p[:, -1] = p[:, 1], p[:, -2]
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return _variance(lap)


def _variance(values: np.ndarray) -> float:
    """Population variance of an integer array from exact int64 sums (float64 result)."""
    n = values.size
    total = int(values.sum(dtype=np.int64))
    squares = int(np.square(values, dtype=np.int32).sum(dtype=np.int64))
    return max(0.0, (squares - total * total / n) / n)


_HUE_ANGLES = np.arange(256) * (2 * math.pi / 256)  # Pillow's HSV hue levels as angles (radians)
_HUE_COS, _HUE_SIN = np.cos(_HUE_ANGLES), np.sin(_HUE_ANGLES)
_LEVELS = np.arange(256, dtype=np.float64)
# No BLAS (`@`) in this module: it runs in decoding workers beside the model, where a BLAS
# call's thread pool waits on busy cores (measured: 30 ms instead of 0.01 ms per image).


def _hue_stats(hsv: np.ndarray) -> tuple[float, float]:
    """(mean hue, circular std of hue) in degrees of an (h, w, 3) uint8 HSV array (Pillow's
    "HSV" mode), each pixel weighted by its chroma S * V / 255 (= max - min of R, G, B) when
    at least `MIN_CHROMA`; (0, 0) without chroma."""
    chroma = hsv[..., 1].astype(np.float32) * hsv[..., 2] / 255.0
    weight = np.where(chroma >= MIN_CHROMA, chroma, 0.0)
    per_level = np.bincount(hsv[..., 0].ravel(), weights=weight.ravel(), minlength=256)
    total = float(per_level.sum())
    if total <= 0:
        return 0.0, 0.0
    c, s = float((per_level * _HUE_COS).sum()) / total, float((per_level * _HUE_SIN).sum()) / total
    resultant = min(1.0, math.hypot(c, s))
    spread = math.degrees(math.sqrt(-2 * math.log(resultant))) if resultant > 0 else 180.0
    return math.degrees(math.atan2(s, c)) % 360.0, spread + 0.0


def image_stats(img: Image.Image) -> ImageStats:
    """The quality scores of one RGB image (module docstring: definitions, units, sources).

    Measured on `thumbnail(img)` (`THUMBNAIL_SIDE` px long side), so the cost is a resize of
    the image already in memory plus numpy work on at most 256 x 256 pixels (the colour scores
    colourfulness, hue, hue_spread and tone_residual on that thumbnail halved by 2 x 2 means,
    `Image.reduce(2)`, unless its short side would fall below `COLOUR_MIN_SIDE`); every score but
    `border_share` inside the uniform bars (`content_box`) when the picture between them keeps
    at least `MIN_KEEP` of each side, else on the whole thumbnail. An image smaller than the
    thumbnail (long side below `THUMBNAIL_SIDE`) is not enlarged in colour, since enlarging adds
    no information: its luma is (the grey scores, sharpness among them, keep the fixed scale),
    while the colour scores take the image itself, halved, inside the same bars. That costs a
    third of an RGB enlargement (WikiArt's 224-px images: 1.06 -> 0.74 ms CPU per image; over
    the 4,200 dev images the flag counts are equal but for grayscale 223 -> 224, sepia 40 -> 42
    and uniform_borders 1,272 -> 1,271). Raises ParameterError for an image that is not RGB.
    """
    if img.mode != "RGB":
        raise ParameterError("img", f"must be an RGB image (artenc.images.to_rgb), got mode {img.mode!r}")
    if max(img.size) < THUMBNAIL_SIDE:
        # an enlargement adds no information: colour scores on the image itself, grey ones on
        # its luma enlarged (sharpness needs the fixed scale), a third of the RGB resize's cost
        thumb, grey = img, np.asarray(thumbnail(img.convert("L")))  # BT.601 luma, 0..255
    else:
        thumb = thumbnail(img)
        grey = np.asarray(thumb.convert("L"))  # BT.601 luma, 0..255
    box = content_box(grey)
    border = 0.0
    if box is not None:
        (height, width), (left, top, right, bottom) = grey.shape, box
        border = 1.0 - (right - left) * (bottom - top) / grey.size
        if right - left >= MIN_KEEP * width and bottom - top >= MIN_KEEP * height:
            if thumb.size != (width, height):  # the box in the image's own pixels, at least 1 x 1
                sx, sy = thumb.width / width, thumb.height / height
                x0, y0 = min(round(left * sx), thumb.width - 1), min(round(top * sy), thumb.height - 1)
                box = (x0, y0, max(x0 + 1, round(right * sx)), max(y0 + 1, round(bottom * sy)))
            thumb = thumb.crop(box)
            grey = grey[top:bottom, left:right]  # luma is per pixel: the crop's own luma
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / grey.size
    # colour scores on the thumbnail halved (2 x 2 pixel means): they do not depend on fine
    # detail, and a quarter of the pixels halves the cost of `image_stats`
    colour = thumb.reduce(2) if min(thumb.size) >= 2 * COLOUR_MIN_SIDE else thumb
    rgb = np.asarray(colour).astype(np.int16)
    rg = (rgb[..., 0] - rgb[..., 1]).ravel()  # exact integers; yb = yb2 / 2
    yb2 = (rgb[..., 0] + rgb[..., 1] - 2 * rgb[..., 2]).ravel()
    n_colour = rg.size
    mean_rg, mean_yb = int(rg.sum(dtype=np.int64)) / n_colour, int(yb2.sum(dtype=np.int64)) / (2 * n_colour)
    colourfulness = math.sqrt(_variance(rg) + _variance(yb2) / 4) + 0.3 * math.hypot(mean_rg, mean_yb)
    hue, spread = _hue_stats(np.asarray(colour.convert("HSV")))
    # within-band sum of squares = sum x^2 - sum over bands of (band sum)^2 / band count
    band = np.asarray(colour.convert("L")).ravel() // 8  # 32 luminance bands
    n = np.maximum(np.bincount(band, minlength=32), 1)
    energy = float(np.square(rg, dtype=np.int32).sum(dtype=np.int64)) + float(
        np.square(yb2, dtype=np.int32).sum(dtype=np.int64)) / 4
    explained = float(((np.bincount(band, rg, 32) ** 2 + (np.bincount(band, yb2, 32) / 2) ** 2) / n).sum())
    return ImageStats(
        brightness=float((counts * _LEVELS).sum()) / grey.size / 255.0,
        darkness=float(counts[_LEVELS < NEAR_BLACK * 255].sum()) / grey.size,
        overexposure=float(counts[_LEVELS > NEAR_WHITE * 255].sum()) / grey.size,
        sharpness=_laplacian_variance(grey),
        entropy=float(-(p * np.log2(p)).sum()) + 0.0, colourfulness=colourfulness, hue=hue, hue_spread=spread,
        tone_residual=max(0.0, 1.0 - explained / energy) if energy > 0 else 0.0, border_share=border,
    )


# ----- flags ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QualityThresholds:
    """When a score makes a flag (defaults: `artenc.defaults.QUALITY_*`; the README says what
    each means). A work is flagged

    dark: darkness >= dark_share; overexposed: overexposure >= overexposed_share and
    brightness >= overexposed_brightness;
    blurry: sharpness < blurry_sharpness; low_information: entropy < low_information_entropy;
    odd_aspect_ratio: aspect_ratio > odd_aspect_ratio; odd_size: short side < min_side px or
    megapixels > max_megapixels; grayscale: colourfulness < grayscale_colourfulness;
    sepia: not grayscale, tone_residual < sepia_tone_residual (colour follows brightness: a
    toned monochrome), hue_spread < sepia_hue_spread degrees and hue within sepia_hue_range
    (degrees, low..high: warm tones, so a cyanotype is not sepia); uniform_borders:
    border_share >= uniform_border_share.
    """

    dark_share: float = QUALITY_DARK_SHARE
    overexposed_share: float = QUALITY_OVEREXPOSED_SHARE
    overexposed_brightness: float = QUALITY_OVEREXPOSED_BRIGHTNESS
    blurry_sharpness: float = QUALITY_BLURRY_SHARPNESS
    low_information_entropy: float = QUALITY_LOW_INFORMATION_ENTROPY
    odd_aspect_ratio: float = QUALITY_ODD_ASPECT_RATIO
    min_side: float = QUALITY_MIN_SIDE
    max_megapixels: float = QUALITY_MAX_MEGAPIXELS
    grayscale_colourfulness: float = QUALITY_GRAYSCALE_COLOURFULNESS
    sepia_tone_residual: float = QUALITY_SEPIA_TONE_RESIDUAL
    sepia_hue_spread: float = QUALITY_SEPIA_HUE_SPREAD
    sepia_hue_range: tuple[float, float] = QUALITY_SEPIA_HUE_RANGE
    uniform_border_share: float = QUALITY_UNIFORM_BORDER_SHARE

    def __post_init__(self) -> None:
        for name in ("dark_share", "overexposed_share", "overexposed_brightness", "uniform_border_share",
                     "sepia_tone_residual"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ParameterError(name, f"must be a share in [0, 1], got {value}")
        if not 0 <= self.low_information_entropy <= 8:
            raise ParameterError("low_information_entropy", f"must be in [0, 8] bits, got {self.low_information_entropy}")
        if not self.odd_aspect_ratio >= 1:
            raise ParameterError("odd_aspect_ratio", f"must be >= 1 (long side / short side), got {self.odd_aspect_ratio}")
        for name in ("blurry_sharpness", "min_side", "max_megapixels", "grayscale_colourfulness",
                     "sepia_hue_spread"):
            value = getattr(self, name)
            if not value >= 0:
                raise ParameterError(name, f"must be >= 0, got {value}")
        low, high = self.sepia_hue_range
        if not 0 <= low <= high <= 360:
            raise ParameterError("sepia_hue_range", f"must be (low, high) degrees with 0 <= low <= high <= 360, "
                                                    f"got {self.sepia_hue_range}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sepia_hue_range"] = list(self.sepia_hue_range)
        return d


def quality_flags(items: pd.DataFrame, thresholds: QualityThresholds | None = None) -> pd.DataFrame:
    """One row per row of `items` (same index): the quality scores and one flag per issue.

    Args:
        items: a store's items (`Store.items`): `width`, `height` (px) and, in stores embedded
            since quality scores exist, the `SCORE_COLUMNS`; `path` is carried along when present.
        thresholds: when a score makes a flag (default `QualityThresholds()`).

    Returns:
        DataFrame with `path` (when in `items`), the scores (`SCORE_COLUMNS`, float64, NaN where
        not computed; `width`, `height`, `short_side`, `aspect_ratio`, `megapixels`,
        `size_excess` = max(min_side / short_side, megapixels / max_megapixels), above 1 when
        odd_size), one column per flag in `FLAGS` (pandas' nullable "boolean": <NA> where the
        flag's score is not computed; the size flags always exist), `computed` (bool: pixel
        scores stored) and `note` ("" or `NOT_COMPUTED`, i.e. "not computed (re-embed)":
        the work was embedded before artenc measured quality; embed it again into a new store).

    Raises:
        ParameterError: `items` without width and height columns.
    """
    t = thresholds or QualityThresholds()
    missing = [c for c in ("width", "height") if c not in items.columns]
    if missing:
        raise ParameterError("items", f"must have width and height columns (a store's items), missing {missing}")
    out = pd.DataFrame(index=items.index)
    if "path" in items.columns:
        out["path"] = items["path"]
    for col in SCORE_COLUMNS:
        out[col] = pd.to_numeric(items[col], errors="coerce").astype("float64") if col in items.columns else np.nan
    width = items["width"].to_numpy(dtype=np.float64)
    height = items["height"].to_numpy(dtype=np.float64)
    out["width"], out["height"] = items["width"], items["height"]
    short = np.minimum(width, height)
    out["short_side"] = short
    out["aspect_ratio"] = np.maximum(width, height) / np.maximum(short, 1)
    out["megapixels"] = width * height / 1e6
    out["size_excess"] = np.maximum(t.min_side / np.maximum(short, 1), out["megapixels"] / t.max_megapixels
                                    if t.max_megapixels > 0 else np.inf)
    computed = out[list(SCORE_COLUMNS)].notna().all(axis=1)
    low, high = t.sepia_hue_range
    grayscale = out["colourfulness"] < t.grayscale_colourfulness
    pixel_flags = {
        "dark": out["darkness"] >= t.dark_share,
        "overexposed": (out["overexposure"] >= t.overexposed_share) & (out["brightness"] >= t.overexposed_brightness),
        "blurry": out["sharpness"] < t.blurry_sharpness,
        "low_information": out["entropy"] < t.low_information_entropy,
        "grayscale": grayscale,
        "sepia": (~grayscale & (out["tone_residual"] < t.sepia_tone_residual)
                  & (out["hue_spread"] < t.sepia_hue_spread) & out["hue"].between(low, high)),
        "uniform_borders": out["border_share"] >= t.uniform_border_share,
    }
    for flag in FLAGS:
        if flag == "odd_aspect_ratio":
            values = pd.Series(out["aspect_ratio"] > t.odd_aspect_ratio, index=out.index, dtype="boolean")
        elif flag == "odd_size":
            values = pd.Series(out["size_excess"] > 1, index=out.index, dtype="boolean")
        else:
            values = pixel_flags[flag].astype("boolean").mask(~computed)
        out[flag] = values
    out["computed"] = computed.astype(bool)
    out["note"] = np.where(computed, "", NOT_COMPUTED)
    return out


# ----- report (Collection.quality) ---------------------------------------------------------
@dataclass(frozen=True)
class QualityIssue:
    """One flagged work: its store `row`, `path` and the `score` that ranks it (the flag's
    score column, `QualityReport.score_of`)."""

    row: int
    path: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QualityReport:
    """Image-quality issues of a store (`Collection.quality`, `quality_report`).

    works: works in the store; computed: works whose pixel scores are stored (the others were
    embedded before artenc measured quality: only their size flags exist, `note` says so);
    flags: per flag in `FLAGS` the flagged works, worst first (ranked by `score_of[flag]`,
    highest first where `worse_when_high[flag]`, else lowest first); thresholds: those used;
    table: `quality_flags`' per-work frame (scores and flags; not part of `to_dict()`).
    """

    works: int
    computed: int
    thresholds: QualityThresholds
    flags: dict[str, list[QualityIssue]]
    note: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)

    @property
    def score_of(self) -> dict[str, str]:
        return {flag: score for flag, (score, _) in _RANK_BY.items()}

    @property
    def worse_when_high(self) -> dict[str, bool]:
        return {flag: high for flag, (_, high) in _RANK_BY.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Flagged works per flag."""
        return {flag: len(issues) for flag, issues in self.flags.items()}

    def to_dict(self) -> dict:
        return {
            "works": self.works,
            "computed": self.computed,
            "not_computed": self.works - self.computed,
            "note": self.note,
            "thresholds": self.thresholds.to_dict(),
            "counts": self.counts,
            "scores": self.score_of,
            "flags": {flag: [i.to_dict() for i in issues] for flag, issues in self.flags.items()},
        }


def quality_report(items: pd.DataFrame, thresholds: QualityThresholds | None = None) -> QualityReport:
    """The flagged works of `items` (a store's items, row i = store row i), worst first per flag.

    See `quality_flags` for the scores and flags, `QualityReport` for the result. A store
    embedded before quality scores existed gets its size flags and
    note "<n> works: not computed (re-embed)". Raises ParameterError as `quality_flags`.
    """
    t = thresholds or QualityThresholds()
    table = quality_flags(items.reset_index(drop=True), t)
    paths = table["path"].astype(str) if "path" in table.columns else pd.Series([""] * len(table))
    flags: dict[str, list[QualityIssue]] = {}
    for flag in FLAGS:
        score, high = _RANK_BY[flag]
        hit = table.index[table[flag].fillna(False).to_numpy(dtype=bool)]
        ranked = table.loc[hit, score].sort_values(ascending=not high, kind="stable")
        flags[flag] = [QualityIssue(int(r), paths[r], float(s)) for r, s in ranked.items()]
    computed = int(table["computed"].sum())
    missing = len(table) - computed
    note = f"{missing} works: {NOT_COMPUTED}" if missing else ""
    return QualityReport(works=len(table), computed=computed, thresholds=t, flags=flags, note=note, table=table)


__all__ = ["FLAGS", "NOT_COMPUTED", "SCORE_COLUMNS", "ImageStats", "QualityIssue", "QualityReport",
           "QualityThresholds", "content_box", "image_stats", "quality_flags", "quality_report", "thumbnail"]
