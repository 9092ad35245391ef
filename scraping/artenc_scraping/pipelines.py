"""Item pipelines: skip done and duplicate rows, download images, write the manifest.

Order (see settings.ITEM_PIPELINES): DedupPipeline -> ArtencImagesPipeline -> ManifestPipeline.
Spiders declare `label_fields`, the label columns of their items, in that order.
"""

from __future__ import annotations

import hashlib
import logging
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, IgnoreRequest
from scrapy.http import Request, Response
from scrapy.pipelines.images import ImagesPipeline
from scrapy.pipelines.media import FileException
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from twisted.python.failure import Failure

from artenc.images import to_rgb
from artenc_scraping.items import ImageItem
from artenc_scraping.manifest import (
    FAILURES,
    MANIFEST,
    CsvJournal,
    compact_failures,
    failure_columns,
    manifest_columns,
    read_rows,
)
from artenc_scraping.reasons import reason

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"  # start of image + first marker
JPEG_QUALITY = 95  # saved JPEGs (IMAGES_JPEG_QUALITY overrides)


def output_dir(settings: BaseSettings) -> Path:
    """The output folder: IMAGES_STORE, which must be a local path."""
    store = str(settings.get("IMAGES_STORE") or "")
    if not store or "://" in store and not store.startswith("file://"):
        raise ValueError(f"IMAGES_STORE must be a local folder, got {store!r}")
    return Path(store.removeprefix("file://"))


def stats_of(crawler: Crawler) -> StatsCollector:
    """The crawler's stats collector (set once the crawl has started)."""
    if crawler.stats is None:
        raise RuntimeError("the crawler has no stats collector yet")
    return crawler.stats


def done_urls(out: Path) -> set[str]:
    """Image URLs already in the manifest of `out`."""
    return {row["image_url"] for row in read_rows(out / MANIFEST)}


class DedupPipeline:
    """Drop rows whose image is already in the manifest (resume) or seen earlier in this crawl."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.out = output_dir(crawler.settings)
        self.done: set[str] = set()
        self.seen: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DedupPipeline:
        return cls(crawler)

    def open_spider(self, spider: Any = None) -> None:
        self.done = done_urls(self.out)
        if self.done:
            log.info("resuming: %d images already in %s", len(self.done), self.out / MANIFEST)

    def process_item(self, item: ImageItem, spider: Any = None) -> ImageItem:
        if item.error or not item.image_urls:
            return item
        url = item.image_urls[0]
        stats = stats_of(self.crawler)
        if url in self.done:
            stats.inc_value("artenc/already_done")
            raise DropItem(f"already in the manifest: {url}", log_level="DEBUG")
        if url in self.seen:
            stats.inc_value("artenc/duplicates")
            raise DropItem(
                f"duplicate row {item.origin}: {url} was already queued", log_level="INFO"
            )
        self.seen.add(url)
        return item


class ArtencImagesPipeline(ImagesPipeline):
    """`ImagesPipeline` naming files by content hash, converting colours the way `artenc embed`
    does and keeping each failure's reason."""

    def __init__(self, store_uri: Any, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        self.jpeg_quality = crawler.settings.getint("IMAGES_JPEG_QUALITY", JPEG_QUALITY)

    def convert_image(
        self,
        image: Image.Image,
        size: tuple[int, int] | None = None,
        *,
        response_body: BytesIO,
    ) -> tuple[Image.Image, BytesIO]:
        """The image in RGB by artenc's one conversion (`artenc.images.to_rgb`), as a JPEG.

        Transparent PNG/WebP/GIF images are composited on white, exactly as `artenc embed`
        decodes the same file from disk. (Scrapy's own rule composites only while the image
        still carries its `format`, which the EXIF-transpose copy made before this call has
        dropped: transparent pixels came out in their hidden colours, black or smeared.) A
        downloaded JPEG is kept byte for byte, as Scrapy means to; other formats and
        thumbnails (`size`, pixels) are encoded at IMAGES_JPEG_QUALITY (default 95: the
        q75 of Pillow costs 0.01-0.1 of cosine similarity to the original).
        """
        image = to_rgb(image)
        if size is None and response_body.getvalue()[:3] == JPEG_MAGIC:
            return image, response_body
        if size:
            image = image.copy()
            image.thumbnail(size, Image.Resampling.LANCZOS)
        buf = BytesIO()
        image.save(buf, "JPEG", quality=self.jpeg_quality)
        return image, buf

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: Any = None,
        *,
        item: Any = None,
    ) -> str:
        digest = _content_hash(request, response)
        return f"images/{digest[:2]}/{digest}.jpg"

    def thumb_path(
        self,
        request: Request,
        thumb_id: str,
        response: Response | None = None,
        info: Any = None,
        *,
        item: Any = None,
    ) -> str:
        return f"thumbs/{thumb_id}/{_content_hash(request, response)}.jpg"

    def media_to_download(self, request: Request, info: Any, *, item: Any = None) -> None:
        """Always download: a content name is unknown before; DedupPipeline skips done rows."""
        return None

    def media_downloaded(
        self, response: Response, request: Request, info: Any, *, item: Any = None
    ) -> Any:
        if response.status != 200:
            raise FileException(f"HTTP {response.status}")
        return super().media_downloaded(response, request, info, item=item)

    def media_failed(self, failure: Failure, request: Request, info: Any) -> Any:
        if isinstance(failure.value, IgnoreRequest):
            return super().media_failed(failure, request, info)
        if isinstance(failure.value, FileException):
            raise failure.value
        raise FileException(reason(failure))

    def item_completed(self, results: list[Any], item: ImageItem, info: Any) -> ImageItem:
        item.images = [value for ok, value in results if ok]
        failed = [reason(value) for ok, value in results if not ok]
        if failed:
            item.error = "; ".join(failed)
        return item


def _content_hash(request: Request, response: Response | None) -> str:
    data = response.body if response is not None else request.url.encode()
    return hashlib.sha1(data).hexdigest()


class ManifestPipeline:
    """Append downloaded images to `manifest.csv` and everything else to `failures.csv`."""

    progress_every = 100

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.out = output_dir(crawler.settings)
        self.manifest: CsvJournal | None = None
        self.failures: CsvJournal | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ManifestPipeline:
        return cls(crawler)

    def open_spider(self, spider: Any = None) -> None:
        fields = list(getattr(self.crawler.spider, "label_fields", []))
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest = CsvJournal(self.out / MANIFEST, manifest_columns(fields))
        self.failures = CsvJournal(self.out / FAILURES, failure_columns(fields))

    def process_item(self, item: ImageItem, spider: Any = None) -> ImageItem:
        if self.manifest is None or self.failures is None:
            raise RuntimeError("ManifestPipeline.process_item before open_spider")
        stats = stats_of(self.crawler)
        for image in item.images:
            self.manifest.write({"path": image["path"], "image_url": image["url"], **item.labels})
            stats.inc_value("artenc/images")
        if item.error or not item.images:
            why = item.error or "no image URL"
            self.failures.write(
                {"url": item.url, "reason": why, "origin": item.origin, **item.labels}
            )
            stats.inc_value("artenc/failures")
            log.warning("failed: %s (%s): %s", item.url, item.origin, why)
        images, failures = (
            stats.get_value("artenc/images", 0),
            stats.get_value("artenc/failures", 0),
        )
        if (images + failures) % self.progress_every == 0:
            log.info("progress: %d images, %d failures", images, failures)
        return item

    def close_spider(self, spider: Any = None) -> None:
        for journal in (self.manifest, self.failures):
            if journal is not None:
                journal.close()
        kept = compact_failures(self.out / FAILURES, done_urls(self.out))
        stats = stats_of(self.crawler)
        stats.set_value("artenc/failures_listed", kept)
        log.info(
            "wrote %s and %s (%d failures listed)", self.out / MANIFEST, self.out / FAILURES, kept
        )
