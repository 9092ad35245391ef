"""Pictures of search results: neighbour grids, pairs, medoid strips, cluster montages, k curves.

Everything draws with matplotlib's Agg backend into PNG files; matplotlib is imported
only when a picture is drawn.
"""

from artenc.viz.grids import (
    draw_cluster_montage,
    draw_duplicate_groups,
    draw_medoid_strip,
    draw_neighbor_grid,
    draw_pair,
)
from artenc.viz.plots import plot_k_sweep

__all__ = [
    "draw_cluster_montage",
    "draw_duplicate_groups",
    "draw_medoid_strip",
    "draw_neighbor_grid",
    "draw_pair",
    "plot_k_sweep",
]
