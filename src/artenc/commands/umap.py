"""`artenc umap STORE [--color-by FIELD] [--thumbnails] --out FILE.png [--html [FILE.html]]`.

A 2-D UMAP map of the store (cosine metric), coloured by a label column (default: the first
label that is not a split marker). `--thumbnails` draws works spread over the PNG;
`--html` writes a self-contained interactive map (hover a point to see the work).
`--method pca` is a fast, cruder fallback for quick looks; UMAP is the default.
"""

from __future__ import annotations

import argparse

from artenc.defaults import UMAP_MIN_DIST, UMAP_NEIGHBORS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("umap", help="2-D map of a store coloured by a label (PNG and/or interactive HTML)",
                       description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", metavar="FILE.png", help="write the map as a PNG")
    p.add_argument("--html", metavar="FILE.html", nargs="?", const="", default=None,
                   help="write an interactive HTML map (default name: --out with .html)")
    p.add_argument("--color-by", metavar="FIELD", help="label column that colours the points")
    p.add_argument("--thumbnails", action="store_true", help="draw thumbnails spread over the PNG")
    p.add_argument("--coords", metavar="FILE.csv", help="also save relpath, x, y and labels per work")
    p.add_argument("--method", choices=["umap", "pca"], default="umap", help="projection (default: umap)")
    p.add_argument("--neighbors", type=int, default=UMAP_NEIGHBORS, help="UMAP n_neighbors (default: %(default)s)")
    p.add_argument("--min-dist", type=float, default=UMAP_MIN_DIST, help="UMAP min_dist (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print what was written as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from artenc.commands._output import emit_json
    from artenc.errors import UsageError
    from artenc.report.interactive import write_map_html
    from artenc.store import Store
    from artenc.viz.umap_map import coordinates_table, plot_map, store_map

    log = logging.getLogger("artenc")
    if not args.out and args.html is None:
        raise UsageError("give --out FILE.png and/or --html FILE.html")
    html = args.html or (str(Path(args.out).with_suffix(".html")) if args.html == "" and args.out else None)
    if args.html == "" and not args.out:
        raise UsageError("--html without a file name needs --out (the HTML goes next to it)")
    store = Store.open(args.store)
    coords, colors = store_map(store, args.color_by, args.method, n_neighbors=args.neighbors,
                               min_dist=args.min_dist, seed=args.seed)
    doc = {"store": str(store.root), "count": len(store), "method": args.method, "color_by": colors.field,
           "png": None, "html": None, "coords": None}
    if args.out:
        paths = store.items["path"].tolist() if args.thumbnails else None
        doc["png"] = str(plot_map(coords, colors, args.out, paths=paths))
    if html:
        doc["html"] = str(write_map_html(store, coords, colors, html))
    if args.coords:
        coordinates_table(store.items, store.label_columns, coords).to_csv(args.coords, index=False)
        doc["coords"] = args.coords
    if args.json:
        emit_json(doc)
    else:
        for key in ("png", "html", "coords"):
            if doc[key]:
                log.info("wrote %s", doc[key])
    return 0
