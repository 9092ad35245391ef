"""Run the Scrapy spiders of `scraping/` from Python and summarise what they wrote.

Twisted's reactor starts once per process, so call one of these functions at most once per
process (the CLI does); run further crawls in subprocesses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
