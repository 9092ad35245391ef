"""Image discovery and loading that survives real collections.

Every failure becomes an `ImageLoadError` whose message names the problem, so the
caller can skip the file and record the reason instead of crashing a batch.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageFile, ImageOps

from artenc.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS  # ~179 MP, one home: artenc.defaults

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


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits by the actual range of the format.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if img.mode == "F":
        import numpy as np

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
                    f"exceeds the limit of {max_pixels} (raise it with --max-pixels)"
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
            img = _to_rgb(img)
    except ImageLoadError:
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
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise ImageLoadError(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from exc
    return img, (width, height)


def load_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Read a file and decode it to RGB (see `open_image`). Raises ImageLoadError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return open_image(data, str(path), max_pixels=max_pixels, draft_size=draft_size)[0]
