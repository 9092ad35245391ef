"""Reading the Web Gallery of Art catalogue: pure functions, no Scrapy.

The catalogue is a `;`-separated text file, plain or zipped, ISO-8859-1 or UTF-8,
with the columns `AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

COLUMNS = (
    "AUTHOR", "BORN-DIED", "TITLE", "DATE", "TECHNIQUE", "LOCATION",
    "URL", "FORM", "TYPE", "SCHOOL", "TIMEFRAME",
)  # fmt: skip


def label_name(column: str) -> str:
    """Manifest column for a catalogue column: lower snake case; URL is the artwork page."""
    return "page_url" if column == "URL" else column.lower().replace("-", "_")


LABEL_FIELDS = tuple(label_name(c) for c in COLUMNS)


class CatalogError(ValueError):
    """The catalogue as a whole cannot be read (not a row-level problem)."""


@dataclass(frozen=True)
class CatalogRow:
    """One data line of the catalogue: its labels, or why it cannot be used."""

    line: int
    labels: dict[str, str]
    error: str = ""


def decode(body: bytes) -> str:
    """Unzip when zipped, then decode as UTF-8 (BOM allowed), else ISO-8859-1."""
    if body[:4] == b"PK\x03\x04":
        body = _first_text_member(body)
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("iso-8859-1")


def _first_text_member(body: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith((".txt", ".csv"))]
            if not names:
                raise CatalogError(f"zip holds no .txt or .csv catalogue: {archive.namelist()}")
            return archive.read(names[0])
    except zipfile.BadZipFile as exc:
        raise CatalogError(f"corrupt zip: {exc}") from exc


def parse(text: str) -> Iterator[CatalogRow]:
    """Yield one row per non-empty data line; a malformed line yields a row with `error`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
    header = [h.strip().upper() for h in next(reader, [])]
    while header and not header[-1]:
        header.pop()
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CatalogError(f"catalogue header lacks {missing}; found {header}")
    index = {c: header.index(c) for c in COLUMNS}
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        while len(fields) > len(header) and not fields[-1].strip():
            fields.pop()
        line = reader.line_num
        values = {
            label_name(c): (fields[i].strip() if i < len(fields) else "") for c, i in index.items()
        }
        if len(fields) != len(header):
            yield CatalogRow(line, values, f"expected {len(header)} fields, found {len(fields)}")
        else:
            yield CatalogRow(line, values)


def image_url(page_url: str) -> str:
    """`…/html/a/aachen/allegory.html` -> `…/art/a/aachen/allegory.jpg` on the same host."""
    parts = urlsplit(page_url)
    segments = parts.path.split("/")
    if "html" not in segments or not segments[-1].lower().endswith((".html", ".htm")):
        raise ValueError(f"not a WGA artwork page URL: {page_url!r}")
    segments[segments.index("html")] = "art"
    segments[-1] = segments[-1].rsplit(".", 1)[0] + ".jpg"
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "", ""))


@dataclass(frozen=True)
class RowFilter:
    """Keep rows whose labels match, ignoring case.

    `equals` values may list alternatives separated by commas (`school="Italian,Flemish"`);
    `author` matches a substring of the AUTHOR column (which itself contains commas).
    """

    equals: Mapping[str, str] = field(default_factory=dict)
    author: str = ""

    def __call__(self, labels: Mapping[str, str]) -> bool:
        for name, wanted in self.equals.items():
            if wanted and labels.get(name, "").strip().lower() not in _alternatives(wanted):
                return False
        return self.author.lower() in labels.get("author", "").lower()


def _alternatives(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",") if v.strip()}
