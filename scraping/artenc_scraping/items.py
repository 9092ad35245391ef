"""The one item type every spider yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImageItem:
    """An image to download and the labels of its manifest row.

    Spiders fill `labels`, `image_urls` and `origin` (where the row came from); a row a spider
    cannot use carries `error` and no URL, so it lands in `failures.csv`. `ImagesPipeline`
    fills `images`; a failed download sets `error`.
    """

    labels: dict[str, str]
    image_urls: list[str] = field(default_factory=list)
    origin: str = ""
    error: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The image URL, or the origin when the row has none."""
        return self.image_urls[0] if self.image_urls else self.origin
