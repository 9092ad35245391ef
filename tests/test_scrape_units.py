"""Unit tests of the scraping helpers: catalogue parsing, URL lists, crash-safe CSV output."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("scrapy")

from artenc_scraping import catalog  # noqa: E402
from artenc_scraping.manifest import (  # noqa: E402
    ColumnsMismatchError,
    CsvJournal,
    compact_failures,
    read_rows,
)
from artenc_scraping.url_list import read_url_list  # noqa: E402

from tests.scrape_fixtures.wga import HEADER, WORKS, catalogue_text, zipped  # noqa: E402

BASE = "http://127.0.0.1:8000"


@pytest.mark.parametrize("encoding", ["iso-8859-1", "utf-8", "utf-8-sig"])
@pytest.mark.parametrize("packed", [False, True])
def test_decode_detects_encoding_and_zip(encoding: str, packed: bool) -> None:
    text = catalogue_text(BASE)
    body = text.encode(encoding)
    if packed:
        body = zipped("catalog.txt", body)
    assert catalog.decode(body) == text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (zipped("readme.md", b"hello"), "no .txt or .csv"),
        (zipped("catalog.txt", b"x" * 100)[:60], "corrupt zip"),
    ],
)
def test_decode_rejects_unusable_zips(body: bytes, message: str) -> None:
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.decode(body)


def test_parse_reads_quoted_semicolons_accents_and_bad_rows() -> None:
    rows = list(catalog.parse(catalogue_text(BASE)))
    assert len(rows) == len(WORKS) + 2  # + duplicate + bad row
    by_title = {r.labels["title"]: r for r in rows}
    study = by_title["Study; head of a woman"]
    assert study.labels["technique"] == "Chalk; heightened with white"
    assert study.labels["author"] == "ÉCOLE, Maître de l'"
    assert by_title["Self-Portrait"].labels["location"] == "Musée du Louvre, Paris"
    assert set(study.labels) == set(catalog.LABEL_FIELDS)
    assert all(not r.error for r in rows)


def test_parse_flags_short_rows_and_rejects_a_foreign_header() -> None:
    text = HEADER + "\nONLY;three;fields\n\n"
    (row,) = catalog.parse(text)
    assert "expected 11 fields, found 3" in row.error
    assert row.line == 2
    with pytest.raises(catalog.CatalogError, match="lacks"):
        list(catalog.parse("jpg_link,AUTHOR,TITLE\nx,y,z\n"))


@pytest.mark.parametrize(
    ("page", "image"),
    [
        (
            "https://www.wga.hu/html/a/aachen/allegory.html",
            "https://www.wga.hu/art/a/aachen/allegory.jpg",
        ),
        (f"{BASE}/html/d/durer/1/selfport.html", f"{BASE}/art/d/durer/1/selfport.jpg"),
        (
            "http://mirror.example/wga/html/z/zurbaran/x.htm",
            "http://mirror.example/wga/art/z/zurbaran/x.jpg",
        ),
    ],
)
def test_image_url_is_the_art_twin_of_the_page(page: str, image: str) -> None:
    assert catalog.image_url(page) == image


@pytest.mark.parametrize(
    "page", ["https://www.wga.hu/art/a/x.jpg", "https://www.wga.hu/html/a/x.txt", ""]
)
def test_image_url_rejects_other_urls(page: str) -> None:
    with pytest.raises(ValueError, match="not a WGA artwork page"):
        catalog.image_url(page)


def test_row_filter() -> None:
    labels = {"author": "AACHEN, Hans von", "form": "painting", "school": "German"}
    assert catalog.RowFilter({"form": "Painting", "school": ""})(labels)
    assert catalog.RowFilter({"school": "italian, german"})(labels)
    assert not catalog.RowFilter({"school": "Italian"})(labels)
    assert catalog.RowFilter(author="aachen, hans")(labels)
    assert not catalog.RowFilter(author="durer")(labels)


def test_url_list_txt_and_csv(tmp_path: Path) -> None:
    txt = tmp_path / "list.txt"
    txt.write_text("# images\nhttp://a/1.jpg\n\n  https://b/2.png  \nnot-a-url\n", encoding="utf-8")
    labels, rows = read_url_list(txt)
    assert labels == []
    assert [(r.line, r.url, bool(r.error)) for r in rows] == [
        (2, "http://a/1.jpg", False),
        (4, "https://b/2.png", False),
        (5, "not-a-url", True),
    ]
    table = tmp_path / "list.csv"
    table.write_text("style,url,artist\nBaroque,http://a/1.jpg,Rubens\nBaroque,ftp://x,\n", "utf-8")
    labels, rows = read_url_list(table)
    assert labels == ["style", "artist"]
    assert rows[0].labels == {"style": "Baroque", "artist": "Rubens"}
    assert rows[1].error and rows[1].line == 3


@pytest.mark.parametrize(
    ("header", "message"), [("link,style", "needs a 'url' column"), ("url,path", "reserved")]
)
def test_url_list_rejects_bad_headers(tmp_path: Path, header: str, message: str) -> None:
    table = tmp_path / "list.csv"
    table.write_text(header + "\nhttp://a/1.jpg,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_url_list(table)


def test_journal_rows_are_on_disk_before_close_and_resume_appends(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    journal = CsvJournal(path, ["path", "title"])
    journal.write({"path": "images/a.jpg", "title": "Ä; b"})
    assert read_rows(path) == [{"path": "images/a.jpg", "title": "Ä; b"}]  # not closed yet
    journal.close()
    with path.open("a", encoding="utf-8") as f:
        f.write("images/cut-by-a-cra")  # a crash in the middle of a row
    journal = CsvJournal(path, ["path", "title"])
    journal.write({"path": "images/b.jpg", "title": "B"})
    journal.close()
    assert [r["path"] for r in read_rows(path)] == ["images/a.jpg", "images/b.jpg"]
    with pytest.raises(ColumnsMismatchError, match="choose another output folder"):
        CsvJournal(path, ["path", "style"])


def test_compact_failures_keeps_latest_and_drops_done(tmp_path: Path) -> None:
    path = tmp_path / "failures.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerows(
            [["url", "reason"], ["u1", "HTTP 500"], ["u2", "HTTP 404"], ["u1", "timeout"]]
        )
    assert compact_failures(path, done_urls={"u2"}) == 1
    assert read_rows(path) == [{"url": "u1", "reason": "timeout"}]
