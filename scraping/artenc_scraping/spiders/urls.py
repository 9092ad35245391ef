"""Spider `urls`: download any list of image URLs into the artenc layout.

Usage: `scrapy crawl urls -a file=LIST.txt|LIST.csv -s IMAGES_STORE=DIR`.

TXT: one URL per line (`#` comments allowed). CSV: a `url` column; other columns become labels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import scrapy

from artenc_scraping.items import ImageItem
from artenc_scraping.url_list import read_url_list


class UrlsSpider(scrapy.Spider):
    """Yields one item per listed URL; the list is read when the spider is created."""

    name = "urls"

    def __init__(self, file: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)
        if not file:
            raise ValueError("the urls spider needs -a file=LIST (a .txt or .csv file)")
        self.source = Path(file)
        self.label_fields, self.rows = read_url_list(self.source)

    async def start(self) -> AsyncIterator[ImageItem]:
        for row in self.rows:
            yield ImageItem(
                row.labels,
                [] if row.error else [row.url],
                origin=f"{self.source}#line={row.line}",
                error=row.error,
            )
