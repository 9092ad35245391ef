"""Labels of works: the labels CSV, which columns are label fields, splits, missing values.

The one home of these rules; prediction, evaluation, the report, the web page and the
training DataModule all use them.

- **Labels CSV**: a `path` column plus any label columns, every cell read as text
  (`read_labels`). A `path` is absolute, or relative to one of the image roots or to the
  CSV's own folder (the first one where the file exists).
- **Matching names** (`name_key`, `match_labels`): a CSV path names an image when the two are
  equal after Unicode NFC normalisation, so a name written decomposed (NFD, as macOS writes
  file names) matches the composed form a spreadsheet writes. A CSV row that names no image
  is reported by name, never dropped silently.
- **Split column**: the label column named `split` (`SPLIT_COLUMN`, exact name; functions
  take another name as a parameter). Its values are the names of the sets, chosen by the
  user (`train`/`test`, `query`/`gallery`, `dev`...); a row is in set `name` when its split
  value, as text, equals `name` (`in_split`). A row with a missing split value is in no set.
- **Label fields**: every label column except the split column (`label_fields`).
- **Missing value** (`is_missing`): None, NaN (or any `pd.isna` value: `pd.NA`, `NaT`) and
  strings that are empty or only whitespace. Everything else is a label, including the
  strings "nan", "NA" and "None" (the CSV is read without pandas' NA guessing, so a label
  that spells "NA" stays a label). A missing label does not vote, is not evaluated, and is
  code -1 in training.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from artenc.errors import ParameterError, UsageError
from artenc.images import absolute

SPLIT_COLUMN = "split"
PATH_COLUMN = "path"


def is_missing(values: Iterable | pd.Series | np.ndarray) -> np.ndarray:
    """(n,) bool: which of `values` are missing labels (None, NaN / pd.NA, blank string).

    `values` is any 1-d sequence (list, numpy array, pandas Series); its index is ignored.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    blank = series.map(lambda v: isinstance(v, str) and not v.strip())
    return (series.isna().to_numpy(dtype=bool) | blank.to_numpy(dtype=bool)).astype(bool)


def plain(value: object) -> object:
    """A stored label value as a JSON-ready Python value: None for None/NaN/pd.NA, numpy
    scalars as Python scalars, anything else as it is (blank strings are kept as stored,
    so JSON documents show exactly what the labels CSV held)."""
    if value is None or (np.ndim(value) == 0 and not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def split_column(columns: Sequence[str], name: str = SPLIT_COLUMN) -> str | None:
    """`name` when it is one of `columns` (the split column is present), else None."""
    return name if name in columns else None


def label_fields(columns: Sequence[str], split: str = SPLIT_COLUMN) -> list[str]:
    """The label columns that describe works: all of `columns` but the split column `split`."""
    return [c for c in columns if c != split]


def choose_fields(
    columns: Sequence[str], fields: Sequence[str] | None = None, split: str = SPLIT_COLUMN, *, where: str = "labels"
) -> list[str]:
    """The label fields to use: `fields` when given (each checked against `columns`), else
    `label_fields(columns, split)`.

    Raises ParameterError("fields", ...) naming a field that is not a label column, and
    UsageError when no field is given and `where` (a store, a CSV) has no label field.
    """
    if not fields:
        chosen = label_fields(columns, split)
        if not chosen:
            raise UsageError(f"{where}: no label columns to use (embed the images with a labels CSV)")
        return chosen
    unknown = [f for f in fields if f not in columns]
    if unknown:
        raise ParameterError("fields", f"{', '.join(unknown)}: not a label column of {where} "
                                       f"(label columns: {', '.join(columns) or 'none'})")
    return list(fields)


def in_split(values: pd.Series | Sequence, names: str | Sequence[str]) -> np.ndarray:
    """(n,) bool: rows whose split value (compared as text) is `names` or one of them;
    missing values are in no split."""
    names = [names] if isinstance(names, str) else list(names)
    text = pd.Series(list(values), dtype=object).astype(str)
    return text.isin([str(n) for n in names]).to_numpy(dtype=bool) & ~is_missing(values)


def name_key(path: str | os.PathLike) -> str:
    """The form in which two file names are compared: Unicode NFC (canonical composition,
    `unicodedata.normalize`), so "Cafe\u0301.jpg" (NFD) and "Caf\u00e9.jpg" (NFC) are one name."""
    return unicodedata.normalize("NFC", os.fspath(path))


def read_labels_table(labels: str | os.PathLike) -> pd.DataFrame:
    """The labels CSV as written: a `path` column and label columns, every cell as text
    (empty cells are ""; no NA guessing).

    Raises ParameterError("labels", ...) when the file is missing, is not readable CSV, or
    has no `path` column; the message names the file and the problem.
    """
    csv = Path(labels)
    if not csv.is_file():
        raise ParameterError("labels", f"file {csv} not found")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for a bad file
        raise ParameterError("labels", f"file {csv} is not readable CSV ({exc})") from exc
    if PATH_COLUMN not in df.columns:
        raise ParameterError("labels", f"file {csv} has no 'path' column (columns: {', '.join(df.columns)})")
    return df


def _label_folders(labels: str | os.PathLike, roots: Sequence[str | os.PathLike]) -> list[Path]:
    """Folders a relative CSV path is tried against, in order: each root's folder, the CSV's."""
    return [absolute(r if Path(r).is_dir() else Path(r).parent) for r in roots] + [absolute(Path(labels).parent)]


def _candidates(p: str, dirs: Sequence[Path]) -> list[Path]:
    candidate = Path(p)
    return [absolute(candidate)] if candidate.is_absolute() else [absolute(d / candidate) for d in dirs]


def read_labels(labels: str | os.PathLike, roots: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """Read a labels CSV (`path` + label columns, every cell as text; empty cells are "").

    Relative paths are resolved against each folder of `roots` (a file root counts as its
    folder), then the CSV's own folder; the first folder where the file exists wins, else the
    first folder. Returns the table with absolute, normalised `path` strings.

    Raises ParameterError("labels", ...) when the file is missing, is not readable CSV, or
    has no `path` column; the message names the file and the problem.
    """
    df = read_labels_table(labels)
    dirs = _label_folders(labels, roots)

    def resolve(p: str) -> str:
        candidates = _candidates(p, dirs)
        return str(next((c for c in candidates if os.path.lexists(c)), candidates[0]))

    df[PATH_COLUMN] = [resolve(p) for p in df[PATH_COLUMN]]
    return df


@dataclass(frozen=True)
class LabelMatch:
    """Labels CSV rows matched to image paths (`match_labels`).

    table: the CSV with `path` replaced by the matching image's path (rows that match no image
    keep their resolved path, as `read_labels` gives it); unmatched: the `path` value, as
    written in the CSV, of every row that matches no image, in CSV order.
    """

    table: pd.DataFrame
    unmatched: list[str]


def match_labels(
    labels: str | os.PathLike, roots: Sequence[str | os.PathLike], paths: Iterable[str | os.PathLike]
) -> LabelMatch:
    """Match the rows of a labels CSV to image `paths` (absolute, as the store holds them).

    A row's `path` (absolute, or relative to a folder of `roots`, then to the CSV's folder,
    as in `read_labels`) names the image whose path is equal after `name_key` (NFC); the
    first folder with a match wins. Raises ParameterError("labels", ...) like `read_labels`.
    """
    raw = read_labels_table(labels)
    resolved = read_labels(labels, roots)
    by_key = {name_key(p): os.fspath(p) for p in paths}
    dirs = _label_folders(labels, roots)
    matched, unmatched = [], []
    for written, fallback in zip(raw[PATH_COLUMN], resolved[PATH_COLUMN], strict=True):
        hit = next((by_key[k] for c in _candidates(written, dirs) if (k := name_key(c)) in by_key), None)
        if hit is None:
            unmatched.append(written)
        matched.append(hit or fallback)
    resolved[PATH_COLUMN] = matched
    return LabelMatch(resolved, unmatched)


def encode_labels(df: pd.DataFrame, fields: Sequence[str]) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Label columns -> ((N, F) int64 codes, {field: class names}).

    Values are stripped of surrounding whitespace; class names are sorted, code i is
    `classes[field][i]`, and a missing value (`is_missing`) is code -1.
    """
    codes, classes = [], {}
    for field in fields:
        column = df[field]
        present = ~is_missing(column)
        values = column.astype(str).str.strip().to_numpy(dtype=object)
        names = sorted(set(values[present]))
        lookup = {name: i for i, name in enumerate(names)}
        codes.append(np.array([lookup[v] if ok else -1 for v, ok in zip(values, present, strict=True)],
                              dtype=np.int64).reshape(len(df)))
        classes[field] = names
    return (np.stack(codes, axis=1) if codes else np.zeros((len(df), 0), np.int64)), classes
