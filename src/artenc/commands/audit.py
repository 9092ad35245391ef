"""`artenc audit STORE [--json] [--out DIR] [--field F...] [-k K] [--top N]`: what to check first.

Per label field (the split column is left out), the works whose label looks wrong: each work's
class probabilities come from a cross-validated linear probe and a leave-one-out kNN vote on
the stored vectors, averaged; confident learning (cleanlab) flags the issues and ranks them by
label quality (the probability of the given label), worst first, with the suggested label and
the nearest labelled works. Then the outliers: works far from their k nearest neighbours (mean
cosine distance, robust z-score), with their duplicate links (identical files and cosine >= 0.9,
embedding only: run `artenc dedup` for verified duplicates).

--out DIR writes DIR/audit.csv (one row per work: given and suggested label, label quality and
issue flag per field; outlier score, z, percentile and rank; duplicate rows) and DIR/audit.json
(the --json document).
"""

from __future__ import annotations

import argparse

from artenc.defaults import AUDIT_FOLDS, AUDIT_K, AUDIT_TOP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="label issues, outliers and duplicate links of a store", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--field", nargs="+", metavar="FIELD",
                   help="label columns to check (default: every label column but the split column)")
    p.add_argument("-k", "--k", type=int, default=AUDIT_K,
                   help="neighbours of the kNN vote and of the outlier score (default: %(default)s)")
    p.add_argument("--folds", type=int, default=AUDIT_FOLDS,
                   help="folds of the cross-validated linear probe (default: %(default)s)")
    p.add_argument("--top", type=int, default=AUDIT_TOP,
                   help="works listed per list, worst first (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="fold shuffling (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", help="write DIR/audit.csv (one row per work) and DIR/audit.json")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=run)


def _text(doc: dict) -> str:
    """The human summary: per field the worst issues, then the most isolated works."""
    lines = [f"{doc['count']} works in {doc['store']}"]
    for field, f in doc["label_issues"].items():
        acc = f["out_of_sample_accuracy"]
        lines.append(f"\n{field}: {f['issues']} label issues among {f['checked']} checked works"
                     + (f" (out-of-sample accuracy {acc:.3f})" if acc is not None else ""))
        for i in f["worst"]:
            lines.append(f"  {i['rank']:>5}  quality {i['label_quality']:.3f}  {i['given']} -> {i['suggested']}"
                         f"  {i['path']}")
    lines.append(f"\noutliers (mean cosine distance to the {doc['outliers']['k']} nearest; median "
                 f"{doc['outliers']['median_score']}):")
    for o in doc["outliers"]["worst"]:
        dup = f"  duplicates: {', '.join(map(str, o['duplicates']))}" if o["duplicates"] else ""
        lines.append(f"  {o['rank']:>5}  {o['score']:.3f}  z {o['z']:.1f}  {o['path']}{dup}")
    d = doc["duplicates"]
    lines.append(f"\n{d['pairs']} duplicate pairs linking {d['linked_works']} works (cosine >= {d['threshold']}"
                 f"{', verified' if d['verified'] else ', embedding only'})")
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from artenc.atomic import atomic_path, atomic_write_json
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    log = logging.getLogger("artenc")
    report = Collection.open(args.store).audit(args.field, k=args.k, folds=args.folds, top=args.top,
                                               seed=args.seed)
    doc = report.to_dict()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "audit.csv") as tmp:
            report.table().to_csv(tmp, index=False)
        atomic_write_json(out / "audit.json", doc)
        log.info("wrote %s and %s", out / "audit.csv", out / "audit.json")
    if args.json:
        emit_json(doc)
    else:
        print(_text(doc))
    return 0
