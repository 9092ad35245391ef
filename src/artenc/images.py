"""Image discovery and loading that survives real collections.

Every failure becomes an `ImageLoadError` whose message names the problem, so the
caller can skip the file and record the reason instead of crashing a batch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from artenc.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS  # ~179 MP, one home: artenc.defaults
from artenc.preprocess import PreprocessConfig, to_uint8_chw

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)

# Truncated files must fail loudly, not decode as grey garbage.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(Exception):
    """An image file could not be turned into RGB pixels; the message says why."""


class NotAnImageError(ImageLoadError):
    """The bytes are no image at all: no image format's signature matches their start (a
    damaged image, e.g. a PNG cut after its header, is a plain `ImageLoadError`)."""


# Pillow formats whose signature test matches ordinary text or data (or stubs that decode
# nothing): a signature of theirs does not make a file an image.
_LOOSE_SIGNATURES = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF", "IPTC", "XBM", "FITS"})
SIGNATURE_BYTES = 16  # the prefix Pillow's `Image.open` gives each format's signature test


def signature_formats(prefix: bytes) -> list[str]:
    """Pillow formats whose signature test (`Image.OPEN[fmt][1]`, the check `Image.open` runs
    first) accepts `prefix`, the first `SIGNATURE_BYTES` of a file; [] for text and other data.

    Only the signature is checked, not the header, so a truncated or corrupt image still names
    its format: this tells "not an image" from "a damaged image".
    """
    Image.init()
    found = []
    for fmt, (_factory, accept) in Image.OPEN.items():
        if accept is None or fmt in _LOOSE_SIGNATURES:
            continue
        try:
            if accept(prefix[:SIGNATURE_BYTES]):
                found.append(fmt)
        except Exception:  # noqa: BLE001, S112 - a signature test that fails on short input: no match
            continue
    return found


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


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to RGB, the one conversion of artenc.

    Transparency (RGBA, LA, PA, palette with a transparent index) is alpha-composited on
    white, so hidden colours under alpha = 0 never show; 16/32-bit greyscale is scaled to
    8 bits by the format's range; float images by their min..max. Used by `open_image`
    (embed, queries, the web page) and by the scraper's saved JPEGs. Returns `img` itself
    when it is already RGB.
    """
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits by the actual range of the format.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        img = Image.fromarray(arr.astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an RGB image with EXIF orientation applied.

    Returns the image and the original (width, height) as stored in the file,
    after orientation. `draft_size` lets large JPEGs decode at a reduced scale
    (never below `draft_size` on the short side). Raises ImageLoadError.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # our guard below checks the header size, with a clearer message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: decompression-bomb guard: {width}x{height} = {width * height} pixels "
                    f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if draft_size and img.format == "JPEG" and min(img.size) >= 2 * draft_size:
                # JPEG DCT scaling: the largest 1/2, 1/4, 1/8 reduction still >= the request
                scale = draft_size / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            img.load()
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            img = to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        formats = signature_formats(data)
        if formats:  # e.g. a PNG cut right after its signature or IHDR chunk
            raise ImageLoadError(f"{name}: truncated or corrupt image (a {formats[0]} signature, "
                                 "but its header cannot be read)") from exc
        raise NotAnImageError(f"{name}: not an image (format not recognised)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "image file is truncated" in msg:
            raise ImageLoadError(f"{name}: truncated image ({msg})") from exc
        raise ImageLoadError(f"{name}: corrupt or unreadable image ({msg})") from exc
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise ImageLoadError(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from exc
    return img, (width, height)


def load_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Read a file and decode it to RGB (see `open_image`). Raises ImageLoadError."""
    return open_image(read_bytes(path), str(path), max_pixels=max_pixels, draft_size=draft_size)[0]


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
    name: str | None = None,
    sha256: str | None = None,
) -> Crop:
    """Decode an image file (path or bytes) and centre-crop it the way `preprocess` says.

    The one decode-and-crop path of artenc (embedding, queries, the web page, the training
    feature cache): `open_image` (EXIF orientation, any mode to RGB, decompression-bomb
    guard `max_pixels` = width * height of the file, large JPEGs decoded at a reduced DCT
    scale no smaller than `preprocess.resize_to`), then `preprocess.to_uint8_chw` (optional
    letterbox trimming when `preprocess.trim_borders`, resize, centre crop; memory bounded
    for any aspect ratio, see `preprocess.resize_and_crop`). `name` labels messages
    (default: the path, or "<bytes>"); `sha256` skips hashing when the caller already has
    the bytes' digest. Raises ImageLoadError (message "<name>: <reason>").
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), name or "<bytes>"
    else:
        data, name = read_bytes(source), name or str(source)
    img, (width, height) = open_image(data, name, max_pixels=max_pixels, draft_size=preprocess.resize_to)
    return Crop(to_uint8_chw(img, preprocess), width, height, sha256 or sha256_hex(data))
