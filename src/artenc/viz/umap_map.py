"""2-D maps of a store: UMAP coordinates, colouring by a label field, a PNG.

`umap-learn` is imported only when a map is computed (install hint otherwise). Its first
call in a fresh environment JIT-compiles numba code (10-30 s); later calls reuse the cache.
`method="pca"` is a fast, cruder fallback (the first two principal components), meant for
smoke tests and quick looks; UMAP is the default. The interactive HTML map is drawn by
`artenc.report.interactive` (`map_fragment`, `write_map_html`).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import UMAP_MIN_DIST, UMAP_NEIGHBORS
from artenc.errors import ParameterError, UsageError, require
from artenc.quality import SCORE_COLUMNS
from artenc.store import ITEM_COLUMNS
from artenc.viz.grids import pyplot, save_figure, thumbnail

if TYPE_CHECKING:
    import pandas as pd

    from artenc.store import Store

log = logging.getLogger(__name__)

METHODS = ("umap", "pca")
MAX_CATEGORIES = 20  # more label values than this: the rarest are drawn as "other"
OTHER, MISSING = "other", "(no label)"
# matplotlib's tab20 reordered so that the first ten are tab10; then grey for "other"/missing.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
]
GREY = "#b0b0b0"
SPLIT_NAMES = {"split", "set", "subset", "fold"}


@dataclass(frozen=True)
class Coloring:
    """Per-point legend key, the legend order and a colour per key."""

    field: str | None
    keys: np.ndarray  # (n,) str
    categories: list[str]
    colors: dict[str, str]

    def point_colors(self) -> list[str]:
        return [self.colors[k] for k in self.keys]


def project_2d(
    vectors: np.ndarray, method: str = "umap", *, n_neighbors: int = UMAP_NEIGHBORS,
    min_dist: float = UMAP_MIN_DIST, seed: int = 0,
) -> np.ndarray:
    """(n, 2) float32 coordinates of `vectors` (cosine metric for UMAP)."""
    if method not in METHODS:
        raise UsageError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise UsageError(f"need a non-empty (n, dim) matrix to draw a map, got shape {x.shape}")
    if method == "pca" or len(x) < 5:
        if method == "umap":
            log.info("only %d works: using PCA instead of UMAP", len(x))
        return _pca_2d(x)
    umap = require("umap", "viz")
    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, len(x) - 1)), min_dist=min_dist,
                        metric="cosine", random_state=seed, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = np.zeros((len(x), 2), dtype=np.float32)
    comps = centred @ vt[:2].T
    out[:, : comps.shape[1]] = comps
    return out


def default_color_field(label_columns: list[str]) -> str | None:
    """The first label column that is not a split marker (`split`, `set`...), else the first one."""
    for col in label_columns:
        if col.lower() not in SPLIT_NAMES:
            return col
    return label_columns[0] if label_columns else None


def coloring(items: pd.DataFrame, color_by: str | None) -> Coloring:
    """Colour points by the label column `color_by` (the most frequent values get their own
    colour); None gives every point one colour. ParameterError("color_by") for a column that
    `items` lacks."""
    n = len(items)
    if color_by is None:
        return Coloring(None, np.full(n, "work", dtype=object), ["work"], {"work": PALETTE[0]})
    if color_by not in items.columns:
        raise ParameterError("color_by", f"{color_by}: no such column (label columns: "
                             f"{', '.join(c for c in items.columns if c not in ITEM_COLUMNS and c not in SCORE_COLUMNS) or 'none'})")
    col = items[color_by]
    present = col.notna() & (col.astype(str).str.strip() != "")
    values = np.where(present, col.astype(str), MISSING).astype(object)
    counts = col[present].astype(str).value_counts()
    top = sorted(counts.index[: MAX_CATEGORIES - 1] if len(counts) > MAX_CATEGORIES else counts.index)
    keys = np.where(np.isin(values, top) | (values == MISSING), values, OTHER).astype(object)
    categories = list(top) + [c for c in (OTHER, MISSING) if (keys == c).any()]
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(top)}
    colors.update({OTHER: GREY, MISSING: "#dddddd"})
    return Coloring(color_by, keys, categories, colors)


def spread_sample(coords: np.ndarray, max_n: int) -> np.ndarray:
    """Up to `max_n` point indices spread over the map: the point nearest each occupied grid cell centre.

    The grid is refined until about `max_n` cells are occupied, so compact clusters get several picks.
    """
    if len(coords) == 0 or max_n <= 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    unit = (coords - lo) / np.maximum(hi - lo, 1e-9)
    cells, chosen = 8, np.zeros(0, dtype=np.int64)
    while cells <= 256:
        scaled = unit * (cells - 1e-6)
        cell = np.floor(scaled).astype(np.int64)
        dist = np.linalg.norm(scaled - (cell + 0.5), axis=1)
        best: dict[tuple[int, int], int] = {}
        for i in np.argsort(dist, kind="stable"):
            best.setdefault((int(cell[i, 0]), int(cell[i, 1])), int(i))
        if len(best) > max_n and len(chosen):
            break
        chosen = np.array(sorted(best.values()), dtype=np.int64)
        if len(chosen) >= min(max_n, len(coords)) // 2:
            break
        cells *= 2
    if len(chosen) > max_n:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, max_n, replace=False))
    return chosen


def plot_map(
    coords: np.ndarray, colors: Coloring, out: str | os.PathLike, *, paths: list[str] | None = None,
    max_thumbnails: int = 80, title: str | None = None,
) -> Path:
    """Scatter the map into a PNG, with a legend; with `paths`, thumbnails spread over the map."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 9) if paths else (9, 7.5))
    size = float(np.clip(2000 / max(len(coords), 1), 4, 40))
    for cat in colors.categories:
        m = colors.keys == cat
        ax.scatter(coords[m, 0], coords[m, 1], s=size, c=colors.colors[cat], label=f"{cat} ({int(m.sum())})",
                   alpha=0.85, linewidths=0.3 if paths else 0, edgecolors="white", zorder=3)
    if paths:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        for i in spread_sample(coords, max_thumbnails):
            box = OffsetImage(thumbnail(paths[i], 64), zoom=0.55)
            ab = AnnotationBbox(box, tuple(coords[i]), frameon=True, pad=0.15, zorder=2,
                                bboxprops={"edgecolor": colors.colors[colors.keys[i]], "linewidth": 1.5})
            ax.add_artist(ab)
    if colors.field is not None:
        ax.legend(title=colors.field, fontsize=8, title_fontsize=9, markerscale=max(1.0, 30 / size) ** 0.5,
                  loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title or f"{len(coords)} works" + (f", coloured by {colors.field}" if colors.field else ""),
                 fontsize=11)
    return save_figure(fig, out)


def store_map(store: Store, color_by: str | None = None, method: str = "umap",
              **kwargs) -> tuple[np.ndarray, Coloring]:
    """Coordinates of every work in `store` and a colouring by the label column `color_by`
    (default: `default_color_field`)."""
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    color_by = color_by if color_by is not None else default_color_field(store.label_columns)
    colors = coloring(store.items, color_by)
    return project_2d(store.vectors, method, **kwargs), colors


def coordinates_table(items: pd.DataFrame, label_columns: list[str], coords: np.ndarray) -> pd.DataFrame:
    """One row per work: relpath, its label columns, and its map coordinates x, y (float32,
    map units) from `project_2d`; the coordinates CSV of the umap command."""
    if len(coords) != len(items):
        raise ParameterError("coords", f"has {len(coords)} rows for {len(items)} works")
    return items[["relpath", *label_columns]].assign(x=coords[:, 0], y=coords[:, 1]).reset_index(drop=True)


def point_text(items: pd.DataFrame, label_columns: list[str]) -> tuple[list[str], list[str]]:
    """Per work: a name (its relative path) and a one-line summary of its labels."""
    names = items["relpath"].astype(str).tolist()
    if not label_columns:
        return names, [""] * len(items)
    frame = items[label_columns].astype("string").fillna("–")
    details = [" · ".join(f"{c}: {v}" for c, v in zip(label_columns, row, strict=True))
               for row in frame.itertuples(index=False)]
    return names, details
