"""`artenc similar STORE QUERY... [-k 9 | --radius R] [--json] [--grid FILE.png] [--verify]`: nearest works.

QUERY is a path already in the store (excluded from its own neighbours) or a new image
file, embedded with the store's model. `--verify` re-ranks the top candidates by
geometric verification (SIFT + RANSAC inliers), for photos of a painting. `--radius R`
lists every work with cosine similarity >= R instead of the top k (exact search; at most
--limit works, the most similar, with a note when more are within R).
"""

from __future__ import annotations

import argparse
import logging

from artenc.defaults import MIN_INLIERS, SIMILAR_K, SIMILAR_LIMIT, VERIFY_TOP

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("similar", help="nearest neighbours of images", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="image file, or a path in the store")
    p.add_argument("-k", type=int, default=SIMILAR_K, help="neighbours per query (default: %(default)s)")
    p.add_argument("--radius", type=float, metavar="R",
                   help="every work with cosine similarity >= R (in [-1, 1]) instead of the top k")
    p.add_argument("--limit", type=int, default=SIMILAR_LIMIT, metavar="N",
                   help="most works listed per query with --radius, the most similar (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    p.add_argument("--grid", metavar="FILE.png", help="draw the query and its neighbours")
    p.add_argument("--verify", action="store_true", help="re-rank candidates by geometric verification")
    p.add_argument("--verify-top", type=int, default=VERIFY_TOP, metavar="N",
                   help="candidates re-ranked by --verify (default: %(default)s)")
    p.add_argument("--min-inliers", type=int, default=MIN_INLIERS,
                   help="inliers that make a match (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="verification processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    result = Collection.open(args.store).similar(args.queries, args.k, verify=args.verify,
                                                 verify_top=args.verify_top, min_inliers=args.min_inliers,
                                                 workers=args.workers, radius=args.radius, limit=args.limit)
    for res in result:
        if res.truncated:
            log.warning("%s: %d works have cosine similarity >= %s; the %d most similar are listed "
                        "(raise --limit to see more)", res.query, res.within, args.radius, len(res.neighbors))
    doc = result.to_dict()
    if args.grid:
        from artenc.viz.grids import draw_neighbor_grid

        draw_neighbor_grid(doc["results"], args.grid)
    if args.json:
        emit_json(doc)
        return 0
    for res in doc["results"]:
        print(res["query"] + (f"  ({res['within']} works with cosine >= {args.radius})" if "within" in res else ""))
        for nb in res["neighbors"]:
            extra = f"  inliers {nb['inliers']}" if "inliers" in nb else ""
            labels = " ".join(f"{k}={v}" for k, v in nb["labels"].items())
            print(f"  {nb['similarity']:.4f}  {nb['path']}{extra}  {labels}".rstrip())
    return 0
