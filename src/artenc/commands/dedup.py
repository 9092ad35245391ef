"""`artenc dedup STORE [--threshold T] [--json] [--out FILE.csv] [--across COLUMN] [--no-verify]`.

Groups of near-duplicates (every member a duplicate of every other), each with a keeper
(highest resolution, then largest file, then path). Candidates come from a range search
at --threshold; with verification (default) each work's --top-m nearest neighbours with
cosine >= --floor are candidates too, and a pair is a duplicate only with >= --min-inliers
SIFT/RANSAC inliers. Defaults: `artenc.defaults`, shown with each flag below.
Byte-identical files are duplicates at every threshold (similarity 1.0). Every duplicate
pair is listed ("pairs" in --json; in the text, the pairs the groups do not show follow
them). --copy-unique-to leaves out each work that is a duplicate of a work already kept
(keeper order), so no two kept works are duplicates of each other.
"""

from __future__ import annotations

import argparse

from artenc.defaults import (
    DUPLICATE_FLOOR,
    DUPLICATE_THRESHOLD,
    DUPLICATE_THRESHOLD_UNVERIFIED,
    DUPLICATE_TOP_M,
    MIN_INLIERS,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dedup", help="near-duplicate groups and train/test leakage", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"cosine similarity of candidates (default {DUPLICATE_THRESHOLD} verified, "
                        f"{DUPLICATE_THRESHOLD_UNVERIFIED} with --no-verify)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="embedding similarity only, no geometric verification")
    p.add_argument("--top-m", type=int, default=None,
                   help=f"verified mode: also each work's M nearest neighbours as candidates "
                        f"(default {DUPLICATE_TOP_M}; 0 = off)")
    p.add_argument("--floor", type=float, default=None,
                   help=f"verified mode: lowest cosine of a top-M candidate (default {DUPLICATE_FLOOR})")
    p.add_argument("--min-inliers", type=int, default=MIN_INLIERS,
                   help="RANSAC inliers for a duplicate (default: %(default)s)")
    p.add_argument("--across", metavar="COLUMN", help="only groups spanning several values of a label (leakage)")
    p.add_argument("--copy-unique-to", metavar="DIR", help="copy keepers and unique works here (originals untouched)")
    p.add_argument("--out", metavar="FILE.csv", help="write one row per group member")
    p.add_argument("--grid", metavar="FILE.png", help="draw the first groups")
    p.add_argument("--workers", type=int, default=None, help="verification processes")
    p.add_argument("--json", action="store_true", help="print the groups as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    log = logging.getLogger("artenc")
    collection = Collection.open(args.store)
    options = dict(verify=args.verify, min_inliers=args.min_inliers, workers=args.workers, top_m=args.top_m,
                   floor=args.floor)
    report = (collection.leaks(args.across, args.threshold, **options) if args.across
              else collection.duplicates(args.threshold, **options))
    doc = report.to_dict()
    if args.out:
        report.table().to_csv(args.out, index=False)
        log.info("wrote %s", args.out)
    if args.grid:
        from artenc.viz.grids import draw_duplicate_groups

        draw_duplicate_groups(doc["groups"], args.grid)
    if args.copy_unique_to:
        n = collection.copy_unique(report, args.copy_unique_to)
        log.info("copied %d unique works to %s", n, args.copy_unique_to)
        for s in n.skipped:
            log.warning("not copied %s: %s", s["path"], s["reason"])
    if args.json:
        emit_json(doc)
        return 0
    n_dup = sum(len(g["duplicates"]) for g in doc["groups"])
    print(f"{len(doc['groups'])} groups, {n_dup} duplicates (threshold {doc['threshold']}, "
          f"{'verified' if doc['verified'] else 'embedding only'})")
    for g in doc["groups"]:
        print(f"keep {g['keep']}" + (f"  [{', '.join(g['sides'])}]" if "sides" in g else ""))
        for d in g["duplicates"]:
            extra = f"  inliers {d['inliers']}" if "inliers" in d else ""
            print(f"  {d['similarity']:.4f}  {d['path']}{extra}")
    in_groups = {frozenset((g["keep"], d["path"])) for g in doc["groups"] for d in g["duplicates"]}
    others = [d for d in doc["pairs"] if frozenset((d["a"], d["b"])) not in in_groups]
    if others:
        print(f"{len(others)} more duplicate pairs (not a keeper and its copy in the groups above):")
        for d in others:
            extra = f"  inliers {d['inliers']}" if "inliers" in d else ""
            print(f"  {d['similarity']:.4f}  {d['a']}  ~  {d['b']}{extra}")
    return 0
