"""Train/validation splits of a labels table: by a column's values, random, or grouped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from artenc.labels import in_split

SplitKind = Literal["random", "column", "group"]


@dataclass
class SplitSpec:
    """How to carve a validation set out of the training rows.

    - `random`: `val_fraction` of rows, stratified by `column` when it is given.
    - `column`: rows whose `column` value is in `val_values` are validation
      (`labels.in_split`: compared as text, missing values in no split).
    - `group`: `val_fraction` of the groups in `column` (e.g. artist), so no group is in
      both sets.
    """

    kind: SplitKind = "random"
    val_fraction: float = 0.15
    column: str | None = None
    val_values: list[str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("random", "column", "group"):
            raise ValueError(f"split kind must be 'random', 'column' or 'group', got {self.kind!r}")
        if self.kind in ("random", "group") and not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.kind in ("column", "group") and not self.column:
            raise ValueError(f"split kind {self.kind!r} needs `column` (e.g. split.column=artist)")
        if self.kind == "column" and not self.val_values:
            raise ValueError("split kind 'column' needs `val_values`, the column values that go to validation")

    def apply(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (train, val) of `df`."""
        if self.column and self.column not in df.columns:
            raise ValueError(f"split column {self.column!r} not in labels (columns: {', '.join(df.columns)})")
        rows = np.arange(len(df))
        rng = np.random.default_rng(self.seed)
        if self.kind == "column":
            val = in_split(df[self.column], self.val_values or [])
        elif self.kind == "group":
            groups = df[self.column].astype(str).to_numpy()
            unique = np.unique(groups)
            n_val = int(round(self.val_fraction * len(unique)))
            val = np.isin(groups, rng.permutation(unique)[:n_val])
        else:
            val = np.zeros(len(df), dtype=bool)
            strata = df[self.column].astype(str).to_numpy() if self.column else np.zeros(len(df), dtype=object)
            for value in pd.unique(strata):
                members = rows[strata == value]
                n_val = int(round(self.val_fraction * len(members)))
                val[rng.permutation(members)[:n_val]] = True
        return rows[~val], rows[val]
