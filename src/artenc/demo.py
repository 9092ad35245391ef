"""`artenc demo`: the whole pipeline on a generated gallery, offline, in about a minute.

gallery (generated) -> embed -> neighbour grids -> near-duplicates -> clusters -> report.
Each step writes files under the output folder and prints where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from artenc.demo_gallery import build_gallery
from artenc.embedding import embed_folders
from artenc.store import Store

log = logging.getLogger("artenc")


@dataclass
class DemoResult:
    """Where the demo left its outputs."""

    out: Path
    gallery: Path
    store: Path
    count: int = 0
    grids: list[Path] = field(default_factory=list)
    duplicates: Path | None = None
    duplicate_groups: int = 0
    clusters: dict = field(default_factory=dict)
    report: Path | None = None

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "gallery": str(self.gallery), "store": str(self.store), "count": self.count,
            "grids": [str(p) for p in self.grids], "duplicates": str(self.duplicates) if self.duplicates else None,
            "duplicate_groups": self.duplicate_groups, "clusters": self.clusters,
            "report": str(self.report) if self.report else None,
        }


def neighbour_grids(store: Store, out_dir: Path, per_style: int = 1, k: int = 8) -> list[Path]:
    """One neighbourhood grid per style: a work, then its k nearest neighbours."""
    from artenc.neighbors import similar
    from artenc.viz.grids import draw_neighbor_grid

    items = store.items
    originals = items[items["kind"] == "original"] if "kind" in items else items
    queries = originals.groupby("style").head(per_style)["path"].tolist() if "style" in items else []
    doc = similar(store, queries, k=k)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [draw_neighbor_grid([result], out_dir / f"neighbours_{i:02d}.png")
            for i, result in enumerate(doc["results"])]


def near_duplicates(store: Store, out_dir: Path) -> tuple[Path, int]:
    """Near-duplicate groups (embedding range search + geometric verification): CSV and picture."""
    from artenc.dedup import find_duplicates, groups_table
    from artenc.viz.grids import draw_duplicate_groups

    doc = find_duplicates(store)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups_table(doc).to_csv(out_dir / "duplicates.csv", index=False)
    if doc["groups"]:
        draw_duplicate_groups(doc["groups"], out_dir / "duplicates.png")
    return out_dir / "duplicates.csv", len(doc["groups"])


def clusters(store: Store, out_dir: Path) -> dict:
    """k-medoids with k chosen automatically; elbow/silhouette curves, medoids and montages."""
    from artenc.cluster import cluster_store

    doc = cluster_store(store, "auto", k_range="2:12:1", plots_dir=out_dir)
    return {"k": doc["k"], "rule": doc.get("rule"), "sizes": doc["sizes"], "plots": str(out_dir)}


def run_demo(out: str | Path = "artenc-demo", *, workers: int | None = None) -> DemoResult:
    """Run every demo step; returns the paths of what it wrote."""
    out = Path(out)
    log.info("[1/6] drawing a small gallery in %s", out / "gallery")
    gallery = build_gallery(out)
    store_dir = out / "store"
    log.info("[2/6] embedding it with tf_efficientnet_lite0 into %s", store_dir)
    embed_folders([gallery], store_dir, labels=gallery / "labels.csv", workers=workers)
    store = Store.open(store_dir)
    result = DemoResult(out=out, gallery=gallery, store=store_dir, count=len(store))
    log.info("[3/6] neighbourhood grids")
    result.grids = neighbour_grids(store, out / "grids")
    log.info("[4/6] near-duplicates")
    result.duplicates, result.duplicate_groups = near_duplicates(store, out / "duplicates")
    log.info("[5/6] k-medoids clusters")
    result.clusters = clusters(store, out / "clusters")
    log.info("[6/6] HTML report")
    from artenc.report.report import write_report

    result.report = write_report(store, out / "report.html", title="artenc demo gallery", k_range="2:12:1")
    return result
