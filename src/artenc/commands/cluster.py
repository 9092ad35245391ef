"""`artenc cluster STORE [--method kmedoids|kmeans|hdbscan|dbscan] [--k N | --k auto] [--json] [--plots DIR]`.

k-medoids (FasterPAM) on cosine distance by default; the medoids are the representative works.
`--k auto` sweeps k and reports inertia, distortion, silhouette and gap statistic per k,
choosing k at the knee of the inertia curve refined by silhouette. Stores larger than
--sample-size are clustered on a random sample, every work then assigned to its nearest medoid.

`--method kmeans` runs scikit-learn's KMeans on the unit vectors with the same choice of k
(representative: the work nearest each centroid). `--method hdbscan` (--min-cluster-size,
--min-samples) and `--method dbscan` (--eps, a cosine distance: neighbours have cosine
similarity >= 1 - eps; default: the knee of the k-distance curve; --min-samples) find the
number of clusters themselves and report the works in no cluster as noise.
"""

from __future__ import annotations

import argparse

from artenc.defaults import CLUSTER_K_RANGE, CLUSTER_METHOD, CLUSTER_SAMPLE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="representative works: k-medoids (automatic k), k-means, HDBSCAN, DBSCAN",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--method", default=CLUSTER_METHOD,
                   help="kmedoids, kmeans, hdbscan or dbscan (default: %(default)s)")
    p.add_argument("-k", "--k", default="auto", help="number of clusters, or 'auto' (default: %(default)s)")
    p.add_argument("--k-range", default=CLUSTER_K_RANGE, metavar="START:STOP[:STEP]",
                   help="k values swept by --k auto, STOP exclusive (default: %(default)s)")
    p.add_argument("--sample-size", type=int, default=CLUSTER_SAMPLE,
                   help="most works clustered, 4*s^2 bytes for k-medoids (default: %(default)s)")
    p.add_argument("--eps", type=float, help="dbscan: cosine distance of neighbours (default: the k-distance knee)")
    p.add_argument("--min-samples", type=int, help="hdbscan/dbscan: works within reach that make a core work "
                                                    "(default: 5 for dbscan, --min-cluster-size for hdbscan)")
    p.add_argument("--min-cluster-size", type=int, help="hdbscan: smallest cluster (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", metavar="DIR", help="write elbow/silhouette curves, medoid strip, cluster montages")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    doc = Collection.open(args.store).clusters(args.k, k_range=args.k_range, sample_size=args.sample_size,
                                               seed=args.seed, plots_dir=args.plots, method=args.method,
                                               eps=args.eps, min_samples=args.min_samples,
                                               min_cluster_size=args.min_cluster_size).to_dict()
    if args.json:
        emit_json(doc)
        return 0
    if "rule" in doc:
        print(f"k = {doc['k']}  ({doc['rule']})")
    else:
        print(f"k = {doc['k']}")
    if doc.get("sweep"):
        print("   k     inertia  distortion  silhouette     gap")
        for row in doc["sweep"]:
            print(f"{row['k']:4d} {row['inertia']:11.3f} {row['distortion']:11.4f} {row['silhouette']:11.4f}"
                  f" {row['gap']:7.4f}")
    if "noise" in doc:
        sil = "-" if doc["silhouette"] is None else f"{doc['silhouette']:.4f}"
        print(f"method {doc['method']}: silhouette {sil}, noise {doc['noise']['count']} works")
    for c in doc["clusters"]:
        labels = "  ".join(f"{col}: {next(iter(v['top']), '-')} ({v['purity']:.0%})" for col, v in c.get("labels", {}).items())
        print(f"#{c['cluster']:<3d} n={c['size']:<6d} {c['medoid']}  {labels}".rstrip())
    return 0
