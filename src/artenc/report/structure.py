"""Report sections about the shape of the collection: k-medoids clusters and the UMAP map."""

from __future__ import annotations

import tempfile
from html import escape
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import CLUSTER_K_RANGE, UMAP_NEIGHBORS
from artenc.report.html import Section, plot_img, tile_row
from artenc.report.inline import file_uri
from artenc.report.interactive import map_fragment
from artenc.report.sections import label_fields, work_tile
from artenc.viz.plots import plot_k_sweep
from artenc.viz.umap_map import coloring, default_color_field, point_text, project_2d

if TYPE_CHECKING:
    from artenc.cluster import ClusterReport
    from artenc.store import Store

MAX_CLUSTER_ROWS = 40


def report_k_range(n: int) -> str:
    """k values to sweep: the default range (CLUSTER_K_RANGE), narrower for small collections."""
    return CLUSTER_K_RANGE if n >= 300 else f"2:{max(3, min(n // 3, 30)) + 1}"


def _chips_of(summary: dict | None) -> list[tuple[str, bool]]:
    if not summary:
        return []
    return [(f"{next(iter(s['top']))} {round(100 * s['purity'])}%", False) for s in summary.values()]


def clusters_section(store: Store, report: ClusterReport, *, per_cluster: int = 8) -> Section:
    """Render k-medoids clusters (`Collection.clusters`): curves, the medoids, members nearest each medoid."""
    n = len(store)
    result = report.clustering
    items, columns = store.items, label_fields(store)
    summaries = [{c: s[c] for c in columns if c in s} if s else None for s in report.label_summaries]
    sizes = result.sizes
    order = np.argsort(-sizes, kind="stable")
    with tempfile.TemporaryDirectory() as tmp:
        curves = "".join(plot_img(file_uri(p), p.stem) for p in plot_k_sweep(result.sweep, result.k, tmp)) \
            if result.sweep else ""
    medoids = [work_tile(items, result.medoids[c], [], title=f"cluster {c} · {sizes[c]} works", kind="keep")
               for c in order]
    for t, c in zip(medoids, order, strict=True):
        t.labels = _chips_of(summaries[c])
    body = f'<div class="plots">{curves}</div><h3>The {result.k} medoids, largest cluster first</h3>'
    body += tile_row(medoids, wrap=True)
    for c in order[:MAX_CLUSTER_ROWS]:
        members = np.flatnonzero(result.labels == c)
        members = members[np.argsort(result.distances[members], kind="stable")][:per_cluster]
        tiles = [work_tile(items, m, columns, score=f"d={result.distances[m]:.3f}") for m in members]
        tiles[0].kind, tiles[0].score = "keep", "medoid"
        purity = "; ".join(f"{escape(col)}: {escape(next(iter(s['top'])))} ({round(100 * s['purity'])}%)"
                           for col, s in (summaries[c] or {}).items())
        head = f"cluster {c}: {sizes[c]} works" + (f" — most common {purity}" if purity else "")
        body += f'<div class="group"><h3>{head}</h3>{tile_row(tiles)}</div>'
    if result.k > MAX_CLUSTER_ROWS:
        body += f"<p>… {result.k - MAX_CLUSTER_ROWS} smaller clusters not shown (see <code>artenc cluster</code>).</p>"
    lede = (f"k-medoids (cosine distance) splits the collection into groups; each group's medoid is its most "
            f"central, representative work. k = {result.k} was chosen from the sweep: {escape(result.rule)}. "
            "Elbow: the cost stops falling fast; silhouette: how much closer works are to their own group than "
            "to the next (higher is better). Under each group: the works nearest its medoid (d = cosine "
            "distance); percentages give the share of the group's most common label.")
    meta = {"k": result.k, "rule": result.rule, "sizes": sizes.tolist(), "sampled": result.sample_size < n}
    return Section("clusters", "Clusters and representative works", lede, body, meta=meta)


def map_section(store: Store, *, field: str | None = None, method: str = "umap",
                cluster_labels: np.ndarray | None = None) -> Section:
    """The 2-D map, coloured by a label field (or by cluster when there are no labels), hover thumbnails."""
    items = store.items
    field = field or default_color_field(store.label_columns)
    if field is None and cluster_labels is not None:
        items = items.assign(cluster=[f"cluster {c}" for c in cluster_labels])
        field = "cluster"
    coords = project_2d(store.vectors, method)
    names, details = point_text(items, store.label_columns)
    body = map_fragment(coords, coloring(items, field), names, details, paths=items["path"].tolist())
    how = f"UMAP (cosine, {UMAP_NEIGHBORS} neighbours)" if method == "umap" and len(items) >= 5 else "PCA"
    lede = (f"Every work as a point, placed by {how} so that works with similar vectors sit close together"
            + (f", coloured by <b>{escape(field)}</b>" if field else "") + ". Distances between far-apart "
            "groups are not meaningful; neighbourhoods are.")
    return Section("map", "Map of the collection", lede, body, meta={"method": method, "color_by": field})
