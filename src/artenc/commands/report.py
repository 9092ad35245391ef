"""`artenc report STORE --out report.html`: one self-contained HTML page about a collection.

Sections: the collection (counts, model, labels), neighbourhoods of sample works,
near-duplicate groups, k-medoids clusters with their medoids and elbow/silhouette curves,
the UMAP map (hover thumbnails) and, when labels exist, retrieval evaluation numbers.
Every image is inlined, so the file can be mailed or opened offline.
"""

from __future__ import annotations

import argparse

from artenc.defaults import REPORT_K, REPORT_SAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of a store", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", required=True, metavar="FILE.html")
    p.add_argument("--title", help="page title (default: from the store folder)")
    p.add_argument("--samples", type=int, default=REPORT_SAMPLES,
                   help="sample works shown with neighbours (default: %(default)s)")
    p.add_argument("-k", type=int, default=REPORT_K, help="neighbours per sample work (default: %(default)s)")
    p.add_argument("--color-by", metavar="FIELD", help="label column of the map (default: first non-split label)")
    p.add_argument("--threshold", type=float, default=None, help="near-duplicate cosine threshold (dedup's default)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="near-duplicates by embedding only, no SIFT/RANSAC verification")
    p.add_argument("--k-range", metavar="START:STOP[:STEP]", help="k values swept for clusters")
    p.add_argument("--map-method", choices=["umap", "pca"], default="umap", help="map projection (default: umap)")
    p.add_argument("--sections", default=None,
                   help="comma-separated subset of the sections: summary, neighbours, duplicates, clusters, "
                        "map, evaluation... (default: all; an unknown name lists them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a summary of the sections as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from artenc.commands._output import emit_json
    from artenc.errors import UsageError
    from artenc.report.report import SECTIONS, ReportOptions, build_sections, render, save_html
    from artenc.store import Store

    if args.samples < 1 or args.k < 1:
        raise UsageError("--samples and -k must be >= 1")
    store = Store.open(args.store)
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    opts = ReportOptions(title=args.title, samples=args.samples, k=args.k, color_by=args.color_by,
                         dedup_threshold=args.threshold, verify=args.verify, k_range=args.k_range,
                         map_method=args.map_method, seed=args.seed,
                         sections=SECTIONS if args.sections is None
                         else tuple(s.strip() for s in args.sections.split(",") if s.strip()))
    sections = build_sections(store, opts)
    out = save_html(render(store, sections, opts.title), args.out)
    if args.json:
        emit_json({"report": str(out), "store": str(store.root), "count": len(store),
                   "sections": {s.id: {"title": s.title, "note": s.note or None, **s.meta} for s in sections}})
    else:
        logging.getLogger("artenc").info("wrote %s (%.1f MB)", out, out.stat().st_size / 2**20)
    return 0
