"""Image grids drawn with matplotlib (Agg): neighbours, pairs, medoids, clusters, duplicates."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from artenc.atomic import atomic_path
from artenc.images import ImageLoadError, load_image

THUMB = 256


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def thumbnail(path: str | os.PathLike, size: int = THUMB) -> np.ndarray:
    """An RGB thumbnail (longest side `size`); a grey tile when the file cannot be read."""
    try:
        img = load_image(path, draft_size=size)
    except ImageLoadError:
        return np.full((size, size, 3), 200, dtype=np.uint8)
    img.thumbnail((size, size))
    return np.asarray(img)


def _short(path: str, width: int = 28) -> str:
    name = Path(path).name
    return name if len(name) <= width else "…" + name[-(width - 1):]


def save_figure(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out) as tmp:  # the format follows the suffix of `out` (tmp keeps it)
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return out


def draw_tiles(
    rows: Sequence[Sequence[tuple[str, str]]], out: str | os.PathLike, *, title: str | None = None,
    tile_inches: float = 2.2,
) -> Path:
    """Draw rows of (image path, caption) tiles into one PNG; rows may differ in length."""
    plt = pyplot()
    n_rows = max(1, len(rows))
    n_cols = max(1, max((len(r) for r in rows), default=1))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(tile_inches * n_cols, tile_inches * n_rows + 0.3),
                             squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if r < len(rows) and c < len(rows[r]):
                path, caption = rows[r][c]
                ax.imshow(thumbnail(path))
                ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def draw_neighbor_grid(results: list[dict], out: str | os.PathLike) -> Path:
    """One row per query (the `similar` document): the query, then its neighbours with cosine."""
    rows = []
    for res in results:
        row = [(res["query"], f"query\n{_short(res['query'])}")]
        row += [(nb["path"], f"{nb['similarity']:.3f}\n{_short(nb['path'])}") for nb in res["neighbors"]]
        rows.append(row)
    return draw_tiles(rows, out)


def draw_pair(a: str, b: str, similarity: float, out: str | os.PathLike) -> Path:
    """Two works side by side with their cosine similarity."""
    return draw_tiles([[(a, _short(a)), (b, _short(b))]], out, title=f"cosine similarity {similarity:.4f}",
                      tile_inches=3.5)


def draw_medoid_strip(paths: Sequence[str], sizes: Sequence[int], out: str | os.PathLike,
                      per_row: int = 10) -> Path:
    """The medoid of each cluster, with its cluster number and size."""
    tiles = [(p, f"#{i} (n={s})") for i, (p, s) in enumerate(zip(paths, sizes, strict=True))]
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    return draw_tiles(rows, out, title="cluster medoids")


def draw_cluster_montage(paths: Sequence[str], out: str | os.PathLike, *, title: str = "",
                         max_images: int = 25) -> Path:
    """Up to `max_images` members of one cluster (medoid first) in a square montage."""
    shown = list(paths)[:max_images]
    side = max(1, math.ceil(math.sqrt(len(shown))))
    tiles = [(p, _short(p, 22)) for p in shown]
    rows = [tiles[i:i + side] for i in range(0, len(tiles), side)]
    return draw_tiles(rows, out, title=title, tile_inches=1.8)


def draw_duplicate_groups(groups: list[dict], out: str | os.PathLike, max_groups: int = 12,
                          max_members: int = 6) -> Path:
    """One row per `dedup` group: the keeper, then its duplicates with their similarity."""
    rows = []
    for g in groups[:max_groups]:
        row = [(g["keep"], f"keep\n{_short(g['keep'])}")]
        row += [(d["path"], f"{d['similarity']:.3f}\n{_short(d['path'])}") for d in g["duplicates"][:max_members - 1]]
        rows.append(row)
    return draw_tiles(rows, out, title=f"{len(groups)} duplicate groups")
