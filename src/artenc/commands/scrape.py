"""`artenc scrape wga|urls`: download images and their labels with the Scrapy spiders."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

WGA_FILTERS = ("form", "school", "timeframe", "type", "author")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `scrape` with its two sources."""
    parser = subparsers.add_parser(
        "scrape",
        help="download images + labels (Web Gallery of Art, URL lists) into a manifest",
        description="Polite, resumable crawls that write DIR/images/, DIR/manifest.csv and "
        "DIR/failures.csv, ready for `artenc embed DIR --labels DIR/manifest.csv`.",
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    wga = sources.add_parser("wga", help="the Web Gallery of Art catalogue")
    wga.add_argument("--catalog-url", help="catalogue (.zip or .txt) instead of the official one")
    for name in WGA_FILTERS:
        what = (
            "substring of AUTHOR"
            if name == "author"
            else f"{name.upper()} value(s), comma-separated"
        )
        wga.add_argument(f"--{name}", default="", help=f"keep rows with this {what}")
    wga.add_argument("--limit", type=int, help="stop after N matching rows")
    wga.add_argument(
        "--describe", action="store_true", help="follow each artwork page for its text"
    )
    _add_common(wga)

    urls = sources.add_parser("urls", help="a list of image URLs (TXT, or CSV with a url column)")
    urls.add_argument("file", type=Path, help="TXT (one URL per line) or CSV (url + label columns)")
    _add_common(urls)

    parser.set_defaults(func=run)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (resumed if it exists)"
    )
    parser.add_argument(
        "--min-size", type=int, default=64, help="smallest width and height kept (px)"
    )
    parser.add_argument(
        "--thumbs", type=int, metavar="PX", help="also write PX-px thumbnails under DIR/thumbs/"
    )
    parser.add_argument(
        "--jobdir", type=Path, help="Scrapy JOBDIR, to pause and resume the request queue"
    )
    parser.add_argument(
        "--cache", action="store_true", help="keep HTTP responses in DIR/.httpcache"
    )
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="any Scrapy setting, e.g. --set DOWNLOAD_DELAY=2 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    """Crawl, then print the summary; exit 1 when rows failed and no image was saved."""
    from artenc.commands._output import emit_json
    from artenc.scrape import crawl_settings, scrape_urls, scrape_wga

    settings = crawl_settings(args.out, min_size=args.min_size, thumbs=args.thumbs, jobdir=args.jobdir,
                              http_cache=args.cache, extra=args.settings)
    if args.source == "wga":
        filters = {name: getattr(args, name) for name in WGA_FILTERS}
        summary = scrape_wga(
            args.out, catalog_url=args.catalog_url, filters=filters, limit=args.limit,
            describe=args.describe, settings=settings,
        )  # fmt: skip
    else:
        summary = scrape_urls(args.file, args.out, settings=settings)
    log.info(
        "%d items: %d images saved, %d failures (%s), %d duplicates, %d already in the manifest",
        summary.items, summary.images, summary.failures, summary.failures_csv,
        summary.duplicates, summary.already_done,
    )  # fmt: skip
    if args.json:
        emit_json(summary.to_dict())
    return 1 if summary.failures and not summary.images and not summary.already_done else 0
