"""Reading a list of image URLs: TXT (one per line) or CSV with a `url` column and labels."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

RESERVED = ("path", "image_url", "reason", "origin")


@dataclass(frozen=True)
class UrlRow:
    """One URL of the list with its labels; `error` when it cannot be fetched."""

    line: int
    url: str
    labels: dict[str, str]
    error: str = ""


def read_url_list(path: Path) -> tuple[list[str], list[UrlRow]]:
    """Return the label column names and the rows; `.csv` files are CSV, anything else TXT."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return _read_csv(text, path)
    rows = [
        _row(number, line.strip(), {})
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [], rows


def _read_csv(text: str, path: Path) -> tuple[list[str], list[UrlRow]]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    if "url" not in columns:
        raise ValueError(f"{path}: a CSV URL list needs a 'url' column; found {columns}")
    clash = [c for c in columns if c in RESERVED]
    if clash:
        raise ValueError(f"{path}: columns {clash} are reserved for the manifest; rename them")
    reader.fieldnames = columns
    labels = [c for c in columns if c != "url"]
    rows = [
        _row(reader.line_num, (r["url"] or "").strip(), {c: (r[c] or "").strip() for c in labels})
        for r in reader
        if any((v or "").strip() for v in r.values() if isinstance(v, str))
    ]
    return labels, rows


def _row(line: int, url: str, labels: dict[str, str]) -> UrlRow:
    ok = url.lower().startswith(("http://", "https://"))
    return UrlRow(line, url, labels, "" if ok else f"not an http(s) URL: {url!r}")
