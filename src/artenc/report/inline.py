"""Inline images as `data:` URIs so an HTML file carries its own pictures."""

from __future__ import annotations

import base64
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from artenc.viz.grids import thumbnail


def data_uri(data: bytes, mime: str) -> str:
    """`data:<mime>;base64,...` for raw bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encode_image(img: Image.Image | np.ndarray, fmt: str = "JPEG", quality: int = 80) -> bytes:
    """PNG or JPEG bytes of a PIL image or an RGB uint8 array."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, fmt.upper(), optimize=True)
    return buf.getvalue()


def image_uri(img: Image.Image | np.ndarray, fmt: str = "JPEG", quality: int = 80) -> str:
    """A data URI of an in-memory image."""
    return data_uri(encode_image(img, fmt, quality), f"image/{fmt.lower()}")


def file_uri(path: str | os.PathLike) -> str:
    """A data URI of a PNG/JPEG/SVG file on disk (mime type from its suffix)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    mime = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml"}.get(suffix, f"image/{suffix}")
    return data_uri(Path(path).read_bytes(), mime)


@lru_cache(maxsize=8192)
def thumb_uri(path: str, size: int = 160, quality: int = 78) -> str:
    """A JPEG thumbnail (longest side `size`) of an image file as a data URI (cached per run)."""
    return image_uri(thumbnail(path, size), "JPEG", quality)
