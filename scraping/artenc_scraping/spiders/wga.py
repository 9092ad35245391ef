"""Spider `wga`: the Web Gallery of Art catalogue, one item per artwork.

Usage: `scrapy crawl wga -s IMAGES_STORE=DIR [-a catalog_url=URL] [-a form=painting]
[-a school=Italian] [-a timeframe=1501-1550] [-a type=religious] [-a author=aachen]
[-a limit=100] [-a describe=1]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from artenc_scraping import catalog
from artenc_scraping.items import ImageItem
from artenc_scraping.reasons import reason

DEFAULT_CATALOG_URL = "https://www.wga.hu/database/download/data_txt.zip"
DESCRIPTION_XPATH = "//p//text()"


class WgaSpider(scrapy.Spider):
    """Reads the catalogue (plain or zipped); the image of `/html/.../x.html` is `/art/.../x.jpg`."""

    name = "wga"

    def __init__(
        self,
        catalog_url: str = DEFAULT_CATALOG_URL,
        form: str = "",
        school: str = "",
        timeframe: str = "",
        type: str = "",  # noqa: A002 - the spider argument is named after the column
        author: str = "",
        limit: str | int = "",
        describe: str | bool = "",
        description_xpath: str = DESCRIPTION_XPATH,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.catalog_url = catalog_url
        self.keep = catalog.RowFilter(
            {"form": form, "school": school, "timeframe": timeframe, "type": type}, author
        )
        self.limit = _limit(limit)
        self.describe = str(describe).lower() in ("1", "true", "yes")
        self.description_xpath = description_xpath
        self.label_fields = [*catalog.LABEL_FIELDS, *(["description"] if self.describe else [])]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for request in self.start_requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:
        yield scrapy.Request(
            self.catalog_url, self.parse, errback=self.catalog_failed, dont_filter=True
        )

    def parse(self, response: Response) -> Iterator[ImageItem | scrapy.Request]:
        """Yield the catalogue rows that pass the filters, up to `limit`."""
        try:
            rows = catalog.parse(catalog.decode(response.body))
            kept = (row for row in rows if self.keep(row.labels))
            for count, row in enumerate(kept):
                if self.limit is not None and count >= self.limit:
                    break
                yield from self._row(row, response)
        except catalog.CatalogError as exc:
            yield ImageItem({}, origin=response.url, error=f"unreadable catalogue: {exc}")

    def _row(
        self, row: catalog.CatalogRow, response: Response
    ) -> Iterator[ImageItem | scrapy.Request]:
        labels = {**row.labels, **({"description": ""} if self.describe else {})}
        item = ImageItem(labels, origin=f"{response.url}#line={row.line}", error=row.error)
        if not row.error:
            try:
                item.image_urls = [catalog.image_url(response.urljoin(row.labels["page_url"]))]
            except ValueError as exc:
                item.error = str(exc)
        if self.describe and item.image_urls:
            # dont_filter: a resumed crawl (JOBDIR) must not lose a row to the dupe filter.
            yield response.follow(
                row.labels["page_url"],
                self.parse_page,
                errback=self.page_failed,
                cb_kwargs={"item": item},
                dont_filter=True,
            )
        else:
            yield item

    def parse_page(self, response: Response, item: ImageItem) -> Iterator[ImageItem]:
        """Add the artwork page's text as `description`."""
        texts = response.xpath(self.description_xpath).getall()
        item.labels["description"] = " ".join(" ".join(texts).split())
        yield item

    def page_failed(self, failure: Failure) -> Iterator[ImageItem]:
        """A missing artwork page leaves the description empty; the image is still fetched."""
        self.logger.warning("no description for %s: %s", failure.request.url, reason(failure))
        yield failure.request.cb_kwargs["item"]

    def catalog_failed(self, failure: Failure) -> Iterator[ImageItem]:
        """Record an unreachable catalogue in failures.csv."""
        yield ImageItem(
            {}, origin=self.catalog_url, error=f"catalogue unavailable: {reason(failure)}"
        )


def _limit(value: str | int) -> int | None:
    if value in ("", None):
        return None
    limit = int(value)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return limit
