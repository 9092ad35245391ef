"""Labels of works: the labels CSV, which columns are label fields, splits, missing values.

The one home of these rules; prediction, evaluation, the report, the web page and the
training DataModule all use them.

- **Labels CSV**: a `path` column plus any label columns, every cell read as text
  (`read_labels`). A `path` is absolute, or relative to one of the image roots or to the
  CSV's own folder (the first one where the file exists).
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
from collections.abc import Iterable, Sequence
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


def read_labels(labels: str | os.PathLike, roots: Sequence[str | os.PathLike] = ()) -> pd.DataFrame:
    """Read a labels CSV (`path` + label columns, every cell as text; empty cells are "").

    Relative paths are resolved against each folder of `roots` (a file root counts as its
    folder), then the CSV's own folder; the first folder where the file exists wins, else the
    first folder. Returns the table with absolute, normalised `path` strings.

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
    dirs = [absolute(r if Path(r).is_dir() else Path(r).parent) for r in roots] + [absolute(csv.parent)]

    def resolve(p: str) -> str:
        candidate = Path(p)
        if candidate.is_absolute():
            return str(absolute(candidate))
        for d in dirs:
            if os.path.lexists(d / candidate):
                return str(absolute(d / candidate))
        return str(absolute(dirs[0] / candidate))

    df[PATH_COLUMN] = [resolve(p) for p in df[PATH_COLUMN]]
    return df


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
