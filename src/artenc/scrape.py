"""Run the Scrapy spiders of `scraping/` from Python and summarise what they wrote.

Twisted's reactor starts once per process, so call one of these functions at most once per
process (the CLI does); run further crawls in subprocesses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from artenc_scraping.manifest import FAILURES, MANIFEST

from artenc.errors import ArtencError, ParameterError, UsageError, require

log = logging.getLogger(__name__)

SETTINGS_MODULE = "artenc_scraping.settings"


@dataclass(frozen=True)
class ScrapeSummary:
    """What one crawl did; the files it wrote are in `out`."""

    out: str
    manifest: str
    failures_csv: str
    items: int
    images: int
    failures: int
    duplicates: int
    already_done: int
    finish_reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def crawl_settings(
    out: str | os.PathLike,
    *,
    min_size: int = 64,
    thumbs: int | None = None,
    jobdir: str | os.PathLike | None = None,
    http_cache: bool = False,
    extra: Sequence[str] | Mapping[str, Any] = (),
) -> dict[str, Any]:
    """Scrapy settings of a crawl into `out`.

    Args:
        min_size: smallest width and height kept, pixels (Scrapy's IMAGES_MIN_WIDTH/HEIGHT).
        thumbs: also write thumbnails of this size, pixels (IMAGES_THUMBS), under out/thumbs.
        jobdir: Scrapy JOBDIR, to pause and resume the request queue.
        http_cache: keep HTTP responses in out/.httpcache (HTTPCACHE_ENABLED).
        extra: more Scrapy settings, as a mapping or "NAME=VALUE" strings (they win).

    Raises:
        ParameterError: min_size or thumbs < 1, or an `extra` entry that is not NAME=VALUE.
    """
    if min_size < 1:
        raise ParameterError("min_size", f"must be >= 1, got {min_size}")
    if thumbs is not None and thumbs < 1:
        raise ParameterError("thumbs", f"must be >= 1, got {thumbs}")
    settings: dict[str, Any] = {"IMAGES_MIN_WIDTH": min_size, "IMAGES_MIN_HEIGHT": min_size}
    if thumbs:
        settings["IMAGES_THUMBS"] = {"small": (thumbs, thumbs)}
    if jobdir:
        settings["JOBDIR"] = str(jobdir)
    if http_cache:
        settings.update(HTTPCACHE_ENABLED=True, HTTPCACHE_DIR=str((Path(out) / ".httpcache").resolve()))
    if isinstance(extra, Mapping):
        settings.update(extra)
        return settings
    for entry in extra:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise ParameterError("extra", f"expects NAME=VALUE, got {entry!r}")
        settings[name.strip()] = value
    return settings


def scrape_wga(
    out: Path,
    *,
    catalog_url: str | None = None,
    filters: Mapping[str, str] | None = None,
    limit: int | None = None,
    describe: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> ScrapeSummary:
    """Crawl the Web Gallery of Art catalogue into `out`.

    `filters` maps form/school/timeframe/type/author to the wanted value.
    """
    if limit is not None and limit < 0:
        raise ParameterError("limit", f"must be >= 0, got {limit}")
    args: dict[str, Any] = {k: v for k, v in (filters or {}).items() if v}
    if catalog_url:
        args["catalog_url"] = catalog_url
    if limit is not None:
        args["limit"] = limit
    if describe:
        args["describe"] = True
    return run_spider("wga", out, args, settings)


def scrape_urls(
    url_list: Path, out: Path, *, settings: Mapping[str, Any] | None = None
) -> ScrapeSummary:
    """Download every URL of a TXT or CSV list into `out`."""
    if not url_list.is_file():
        raise UsageError(f"URL list not found: {url_list}")
    return run_spider("urls", out, {"file": str(url_list)}, settings)


def run_spider(
    spider: str,
    out: Path,
    spider_args: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
) -> ScrapeSummary:
    """Run one spider of the artenc Scrapy project to completion with the output in `out`."""
    require("scrapy", "scrape")
    from scrapy.crawler import CrawlerProcess
    from scrapy.settings import Settings

    if out.exists() and not out.is_dir():
        raise ParameterError("out", f"exists and is not a folder: {out}")
    merged = Settings()
    merged.setmodule(SETTINGS_MODULE, priority="project")
    # artenc's CLI has configured logging to stderr already.
    merged.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")
    merged.set("LOG_VERSIONS", [], priority="cmdline")
    merged.update({"IMAGES_STORE": str(out), **(settings or {})}, priority="cmdline")
    process = CrawlerProcess(merged)
    quiet_scrapy_logging()
    crawler = process.create_crawler(spider)
    errors: list[BaseException] = []
    process.crawl(crawler, **spider_args).addErrback(lambda f: errors.append(f.value))
    process.start()
    if errors:
        error = errors[0]
        kind = UsageError if isinstance(error, ValueError) else ArtencError
        raise kind(f"{spider} crawl failed: {error}") from error
    return _summary(out, crawler.stats.get_stats() if crawler.stats else {})


def quiet_scrapy_logging() -> None:
    """Keep Scrapy's banners and per-download tracebacks for verbose (DEBUG level) runs (call after
    CrawlerProcess(), which resets Scrapy's loggers).

    Failed downloads are still logged, one line each, and listed in failures.csv.
    """
    level = logging.getLogger().getEffectiveLevel()
    logging.getLogger("scrapy").setLevel(level)  # Scrapy sets DEBUG
    if level <= logging.DEBUG:
        return
    for name in (
        "scrapy.utils.log",
        "scrapy.middleware",
        "scrapy.addons",
        "scrapy.crawler",
        "scrapy.statscollectors",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("scrapy.pipelines.media", "scrapy.pipelines.files"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _summary(out: Path, stats: Mapping[str, Any]) -> ScrapeSummary:
    return ScrapeSummary(
        out=str(out),
        manifest=str(out / MANIFEST),
        failures_csv=str(out / FAILURES),
        items=int(stats.get("item_scraped_count", 0)) + int(stats.get("item_dropped_count", 0)),
        images=int(stats.get("artenc/images", 0)),
        failures=int(stats.get("artenc/failures", 0)),
        duplicates=int(stats.get("artenc/duplicates", 0)),
        already_done=int(stats.get("artenc/already_done", 0)),
        finish_reason=str(stats.get("finish_reason", "not started")),
    )
