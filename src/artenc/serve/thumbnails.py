"""JPEG thumbnails of stored works, cached on disk by content hash.

A thumbnail is addressed by item id in URLs; on disk it is named by the image's
sha256 and the thumbnail size, so it stays valid across stores and is never stale
when a file is re-embedded with new content. Writes are atomic (`artenc.atomic`),
so concurrent requests for the same thumbnail are harmless.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from artenc.atomic import atomic_path
from artenc.images import ImageLoadError, open_image, read_image_bytes, sha256_hex

_HASH = re.compile(r"^[0-9a-f]{8,128}$")


class ThumbnailError(Exception):
    """The original image of an item cannot be read any more (moved, deleted, corrupt)."""


class ThumbnailCache:
    """`get(path, sha256) -> Path` of a JPEG at most `size` px on its long side."""

    def __init__(self, folder: str | os.PathLike, size: int = 256, quality: int = 85,
                 max_pixels: int | None = None) -> None:
        if not 32 <= size <= 2048:
            raise ValueError(f"thumbnail size must be in [32, 2048], got {size}")
        self.folder = Path(folder) / str(size)
        self.size = size
        self.quality = quality
        self.max_pixels = max_pixels

    def get(self, source: str, sha256: str) -> Path:
        """The cached thumbnail of `source`, made first if needed. Raises ThumbnailError."""
        if not _HASH.match(sha256 or ""):
            raise ThumbnailError("item has no content hash")
        target = self.folder / sha256[:2] / f"{sha256}.jpg"
        if target.is_file():
            return target
        if not os.path.isfile(source):  # gone, or a pipe/device put in its place: never opened
            raise ThumbnailError("the image file is missing or not a regular file")
        try:
            data = read_image_bytes(source, max_pixels=self.max_pixels)
            if sha256_hex(data) != sha256:  # the cache is keyed by content: never file other bytes there
                raise ThumbnailError("the image file has changed since it was embedded (re-run embed)")
            img, _ = open_image(data, source, max_pixels=self.max_pixels, draft_size=self.size)
        except ImageLoadError as exc:
            raise ThumbnailError(str(exc)) from exc
        img.thumbnail((self.size, self.size))
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            img.save(tmp, "JPEG", quality=self.quality, optimize=True)
        return target
