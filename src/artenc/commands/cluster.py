"""`artenc cluster STORE [--k N | --k auto] [--k-range 5:100:2] [--json] [--plots DIR]`.

k-medoids (FasterPAM) on cosine distance; the medoids are the representative works.
`--k auto` sweeps k and reports inertia, distortion, silhouette and gap statistic per k,
choosing k at the knee of the inertia curve refined by silhouette. Stores larger than
--sample-size are clustered on a random sample, every work then assigned through FAISS.
"""

from __future__ import annotations

import argparse

from artenc.defaults import CLUSTER_K_RANGE, CLUSTER_SAMPLE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="k-medoids representatives, with automatic k", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("-k", "--k", default="auto", help="number of clusters, or 'auto' (default: %(default)s)")
    p.add_argument("--k-range", default=CLUSTER_K_RANGE, metavar="START:STOP[:STEP]",
                   help="k values swept by --k auto, STOP exclusive (default: %(default)s)")
    p.add_argument("--sample-size", type=int, default=CLUSTER_SAMPLE,
                   help="most works in the distance matrix, 4*s^2 bytes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", metavar="DIR", help="write elbow/silhouette curves, medoid strip, cluster montages")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    doc = Collection.open(args.store).clusters(args.k, k_range=args.k_range, sample_size=args.sample_size,
                                               seed=args.seed, plots_dir=args.plots).to_dict()
    if args.json:
        emit_json(doc)
        return 0
    if "rule" in doc:
        print(f"k = {doc['k']}  ({doc['rule']})")
        print("   k     inertia  distortion  silhouette     gap")
        for row in doc["sweep"]:
            print(f"{row['k']:4d} {row['inertia']:11.3f} {row['distortion']:11.4f} {row['silhouette']:11.4f}"
                  f" {row['gap']:7.4f}")
    else:
        print(f"k = {doc['k']}")
    for c in doc["clusters"]:
        labels = "  ".join(f"{col}: {next(iter(v['top']), '-')} ({v['purity']:.0%})" for col, v in c.get("labels", {}).items())
        print(f"#{c['cluster']:<3d} n={c['size']:<6d} {c['medoid']}  {labels}".rstrip())
    return 0
