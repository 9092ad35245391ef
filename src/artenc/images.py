"""Image discovery and loading that survives real collections.

Every failure becomes an `ImageLoadError` whose message names the problem, so the
caller can skip the file and record the reason instead of crashing a batch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

# one home for both limits: artenc.defaults (~179 MP; long side at most 100 x the short side)
from artenc.defaults import MAX_ASPECT_RATIO as DEFAULT_MAX_ASPECT_RATIO
from artenc.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS
from artenc.errors import ParameterError
from artenc.preprocess import PreprocessConfig, to_uint8_chw

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)

# Truncated files must fail loudly, not decode as grey garbage.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(Exception):
    """An image file could not be turned into RGB pixels; the message says why."""


def absolute(path: str | os.PathLike) -> Path:
    """Absolute, normalised path that keeps symlinks as the user named them."""
    return Path(os.path.normpath(os.path.abspath(path)))


def discover_images(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Return image files under `roots` (files or folders, recursive), sorted, de-duplicated.

    Hidden files and folders are ignored. Raises FileNotFoundError for a missing root.
    """
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        if root.is_file():
            found.add(absolute(root))
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    found.add(absolute(Path(dirpath) / name))
    return sorted(found)


# Pixels converted at once when a mode needs arithmetic to become RGB (alpha compositing,
# 16-bit and float scaling): the temporaries of one tile (RGBA copies, float64 arrays) stay
# within a few tens of MB whatever the image's size, on top of the decoded image and its RGB copy.
TILE_PIXELS = 1 << 20

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _tiles(width: int, height: int, pixels: int | None = None):
    """Boxes (left, top, right, bottom) covering a width x height image, each of at most `pixels`
    (default `TILE_PIXELS`) pixels: bands of whole rows, or pieces of one row when a row alone
    is longer."""
    pixels = pixels or TILE_PIXELS
    tile_w = min(width, pixels)
    rows = max(1, pixels // tile_w)
    for top in range(0, height, rows):
        for left in range(0, width, tile_w):
            yield left, top, min(left + tile_w, width), min(top + rows, height)


def _map_tiles(img: Image.Image, to_rgb) -> Image.Image:
    """`to_rgb` (a per-pixel conversion to RGB) applied tile by tile into one RGB image: the same
    pixels as `to_rgb(img)`, with temporaries bounded by `TILE_PIXELS`."""
    width, height = img.size
    if width * height <= TILE_PIXELS:
        return to_rgb(img)
    out = Image.new("RGB", img.size)
    for box in _tiles(width, height):
        out.paste(to_rgb(img.crop(box)), box[:2])
    return out


def _on_white(img: Image.Image) -> Image.Image:
    """Alpha (or palette transparency) composited over opaque white, as RGB."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _finite_range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of the finite values of a mode-F image, tile by tile; (0, 0) when none is finite."""
    lo, hi = math.inf, -math.inf
    for box in _tiles(*img.size):
        arr = np.asarray(img.crop(box), dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white.

    16/32-bit integer greyscale is scaled to 8 bits by the range of its format (65535 for
    I;16, 255 for mode I whose values fit 8 bits), float greyscale by its finite min..max
    (NaN and -inf become black, +inf white). Modes that need arithmetic are converted tile
    by tile (`TILE_PIXELS`), so the memory beyond the decoded image is its RGB result plus
    one tile's temporaries, for any size and aspect ratio.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return _map_tiles(img, _on_white)
    if mode in _INTEGER_MODES:
        peak = 65535.0 if img.getextrema()[1] > 255 or mode.startswith("I;16") else 255.0

        def scale(tile: Image.Image) -> Image.Image:
            arr = np.asarray(tile, dtype=np.float64)
            return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L").convert("RGB")

        return _map_tiles(img, scale)
    if mode == "F":
        lo, hi = _finite_range(img)

        def stretch(tile: Image.Image) -> Image.Image:
            arr = np.nan_to_num(np.asarray(tile, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
            return Image.fromarray(arr.astype("uint8"), "L").convert("RGB")

        return _map_tiles(img, stretch)
    return img.convert("RGB")


def _ratio_text(width: int, height: int) -> str:
    """"1:10000" for a 1 x 10,000 image, "333.3:1" for 1000 x 3 (the short side as 1)."""
    long_side, short_side = max(width, height), min(width, height)
    ratio = f"{long_side / short_side:.1f}".removesuffix(".0")
    return f"1:{ratio}" if width <= height else f"{ratio}:1"


def check_geometry(
    width: int,
    height: int,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
) -> None:
    """Refuse an image from its header size, before any pixel is decoded.

    `width` x `height` in pixels, as the file declares them. Raises ImageLoadError
    ("<name>: <reason>") when the image has no pixels, when width * height exceeds
    `max_pixels` (the decompression-bomb guard), or when the long side exceeds
    `max_aspect_ratio` times the short side (a 1 x 10,000 strip has no meaningful
    centre crop, see `artenc.defaults.MAX_ASPECT_RATIO`); None disables a limit.
    Raises ParameterError for a `max_aspect_ratio` below 1.
    """
    if max_aspect_ratio is not None and not max_aspect_ratio >= 1:
        raise ParameterError("max_aspect_ratio", f"must be >= 1 (long side / short side), got {max_aspect_ratio}")
    if width < 1 or height < 1:
        raise ImageLoadError(f"{name}: no pixels ({width}x{height} px)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: decompression-bomb guard: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)"
        )
    if max_aspect_ratio is not None and max(width, height) > max_aspect_ratio * min(width, height):
        limit = f"{max_aspect_ratio:g}"
        limit = f"1:{limit}" if width <= height else f"{limit}:1"
        raise ImageLoadError(
            f"{name}: aspect ratio {_ratio_text(width, height)} ({width}x{height} px) exceeds {limit}, "
            "too thin for a meaningful centre crop (raise max_aspect_ratio to allow it)"
        )


def open_image(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    draft_size: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an RGB image with EXIF orientation applied.

    Returns the image and the original (width, height) as stored in the file,
    after orientation. The header size is checked first (`check_geometry`: `max_pixels`,
    `max_aspect_ratio`), so a refused file costs no decoding. `draft_size` lets large
    JPEGs decode at a reduced scale (never below `draft_size` on the short side).
    Memory: the decoded image, its RGB conversion (`_to_rgb`, tiled) and, for rotated
    files, one transposed copy: a few bytes per pixel, at most `max_pixels` pixels.
    Raises ImageLoadError.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # our guard below checks the header size, with a clearer message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            # the header size, checked before EXIF is read: a PNG's getexif decodes the pixels
            width, height = img.size
            check_geometry(width, height, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
            if getattr(img, "is_animated", False):
                img.seek(0)
            if draft_size and img.format == "JPEG" and min(img.size) >= 2 * draft_size:
                # JPEG DCT scaling: the largest 1/2, 1/4, 1/8 reduction still >= the request
                scale = draft_size / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            img.load()
            # read after loading: TIFF turns the image itself (its header size is already turned)
            # and drops the tag; PNG keeps its eXIf chunk after the pixels
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            img = _to_rgb(img)
    except (ImageLoadError, ParameterError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(f"{name}: not an image (format not recognised)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "image file is truncated" in msg:
            raise ImageLoadError(f"{name}: truncated image ({msg})") from exc
        raise ImageLoadError(f"{name}: corrupt or unreadable image ({msg})") from exc
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError, struct.error, OverflowError,
            ZeroDivisionError) as exc:
        raise ImageLoadError(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from exc
    return img, (width, height)


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    draft_size: int | None = None,
) -> Image.Image:
    """Read a file and decode it to RGB (see `open_image`: the same header guards, so training
    augmentation, thumbnails and verification refuse what `embed` skips). Raises ImageLoadError."""
    return open_image(read_bytes(path), str(path), max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                      draft_size=draft_size)[0]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; ImageLoadError naming the path when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data`, 64 hex digits (the store's content hash of a file)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class Crop:
    """One image ready for a model: `pixels` uint8 (3, S, S) RGB (S = `PreprocessConfig.size`,
    not normalised), the source `width` x `height` in pixels after EXIF orientation, and
    the `sha256` of the file's bytes."""

    pixels: np.ndarray
    width: int
    height: int
    sha256: str


def decode_crop(
    source: bytes | str | os.PathLike,
    preprocess: PreprocessConfig,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    name: str | None = None,
    sha256: str | None = None,
) -> Crop:
    """Decode an image file (path or bytes) and centre-crop it the way `preprocess` says.

    The one decode-and-crop path of artenc (embedding, queries, the web page, the training
    feature cache): `open_image` (header guards first: decompression-bomb guard `max_pixels`
    = width * height of the file and `max_aspect_ratio` = long side / short side, see
    `check_geometry`; then EXIF orientation, any mode to RGB, large JPEGs decoded at a
    reduced DCT scale no smaller than `preprocess.resize_to`), then
    `preprocess.to_uint8_chw` (optional letterbox trimming when `preprocess.trim_borders`,
    resize, centre crop; memory bounded for any aspect ratio, see
    `preprocess.resize_and_crop`). Peak memory is a few bytes per decoded pixel for every
    format and geometry (scripts/bench_memory.py measures it). `name` labels messages
    (default: the path, or "<bytes>"); `sha256` skips hashing when the caller already has
    the bytes' digest. Raises ImageLoadError (message "<name>: <reason>"), ParameterError
    for a `max_aspect_ratio` below 1.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), name or "<bytes>"
    else:
        data, name = read_bytes(source), name or str(source)
    img, (width, height) = open_image(data, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                                      draft_size=preprocess.resize_to)
    try:
        pixels = to_uint8_chw(img, preprocess)
    except (ValueError, OverflowError) as exc:
        raise ImageLoadError(f"{name}: cannot resample {width}x{height} px ({type(exc).__name__}: {exc})") from exc
    return Crop(pixels, width, height, sha256 or sha256_hex(data))
