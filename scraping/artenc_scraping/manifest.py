"""Crash-safe CSV output: `manifest.csv` (downloaded images) and `failures.csv`."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

MANIFEST = "manifest.csv"
FAILURES = "failures.csv"


def manifest_columns(label_fields: Sequence[str]) -> list[str]:
    """`path` (relative to the output folder), `image_url`, then the labels."""
    return ["path", "image_url", *label_fields]


def failure_columns(label_fields: Sequence[str]) -> list[str]:
    """The URL that failed, why, where the row came from, then the labels."""
    return ["url", "reason", "origin", *label_fields]


class ColumnsMismatchError(ValueError):
    """An existing CSV in the output folder has other columns than this crawl writes."""


class CsvJournal:
    """Append rows to a CSV, flushed one by one, so a crash loses no row already written.

    An existing file is continued (resume); a last line cut by a crash is removed first.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        _drop_partial_last_line(path)
        existing = read_header(path)
        if existing and existing != list(columns):
            raise ColumnsMismatchError(
                f"{path} has columns {existing}, this crawl writes {list(columns)}; "
                "choose another output folder"
            )
        self._file = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=list(columns))
        if not existing:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: Mapping[str, str]) -> None:
        """Append one row and flush it to the operating system."""
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        """Flush to disk and close."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def read_header(path: Path) -> list[str]:
    """The header of a CSV file, or [] when it is missing or empty."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts ([] when missing)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def compact_failures(path: Path, done_urls: set[str]) -> int:
    """Keep the latest failure per URL, minus URLs since downloaded; return the rows kept."""
    rows = read_rows(path)
    if not rows:
        return 0
    latest = {r["url"]: r for r in rows if r["url"] not in done_urls}
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(latest.values())
    os.replace(tmp, path)
    return len(latest)


def _drop_partial_last_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
