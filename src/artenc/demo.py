"""`artenc demo`: the whole pipeline on a generated gallery, offline, in about a minute.

gallery (generated) -> embed -> neighbour grids -> near-duplicates -> clusters -> report.
Each step writes files under the output folder and prints where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from artenc.collection import Collection
from artenc.demo_gallery import build_gallery
from artenc.embedding import embed_folders
from artenc.report.report import write_report
from artenc.viz.grids import draw_duplicate_groups, draw_neighbor_grid

if TYPE_CHECKING:
    from artenc.dedup import DuplicateReport

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


DEMO_K_RANGE = "2:12:1"  # k swept for the demo's 66 works


def neighbour_grids(collection: Collection, out_dir: Path, per_style: int = 1, k: int = 8) -> list[Path]:
    """One neighbourhood grid per style: a work, then its k nearest neighbours."""
    items = collection.items
    originals = items[items["kind"] == "original"] if "kind" in items else items
    queries = originals.groupby("style").head(per_style)["path"].tolist() if "style" in items else []
    doc = collection.similar(queries, k=k).to_dict()
    out_dir.mkdir(parents=True, exist_ok=True)
    return [draw_neighbor_grid([result], out_dir / f"neighbours_{i:02d}.png")
            for i, result in enumerate(doc["results"])]


def near_duplicates(report: DuplicateReport, out_dir: Path) -> Path:
    """Near-duplicate groups as a CSV (one row per member) and a picture."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report.table().to_csv(out_dir / "duplicates.csv", index=False)
    if report.groups:
        draw_duplicate_groups(report.to_dict()["groups"], out_dir / "duplicates.png")
    return out_dir / "duplicates.csv"


def run_demo(out: str | Path = "artenc-demo", *, workers: int | None = None) -> DemoResult:
    """Run every demo step; returns the paths of what it wrote.

    Near-duplicates and clusters are computed once (`Collection.duplicates`,
    `Collection.clusters`) and rendered both as files and in the report.
    """
    out = Path(out)
    log.info("[1/6] drawing a small gallery in %s", out / "gallery")
    gallery = build_gallery(out)
    store_dir = out / "store"
    log.info("[2/6] embedding it with tf_efficientnet_lite0 into %s", store_dir)
    embed_folders([gallery], store_dir, labels=gallery / "labels.csv", workers=workers)
    collection = Collection.open(store_dir)
    result = DemoResult(out=out, gallery=gallery, store=store_dir, count=len(collection))
    log.info("[3/6] neighbourhood grids")
    result.grids = neighbour_grids(collection, out / "grids")
    log.info("[4/6] near-duplicates")
    duplicates = collection.duplicates()
    result.duplicates, result.duplicate_groups = near_duplicates(duplicates, out / "duplicates"), len(duplicates.groups)
    log.info("[5/6] k-medoids clusters")
    clusters = collection.clusters("auto", k_range=DEMO_K_RANGE, plots_dir=out / "clusters")
    result.clusters = {"k": clusters.k, "rule": clusters.rule, "sizes": clusters.clustering.sizes.tolist(),
                       "plots": str(out / "clusters")}
    log.info("[6/6] HTML report")
    result.report = write_report(collection, out / "report.html", title="artenc demo gallery", k_range=DEMO_K_RANGE,
                                 duplicates=duplicates, clusters=clusters)
    return result
