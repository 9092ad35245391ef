"""k sweep: the workshop's elbow (one k-medoids fit per k) vs `artenc cluster --k auto`.

Workshop, per k in 5..99 step 2: the cosine distance matrix (sklearn pairwise_distances,
as scikit-learn-extra's KMedoids.fit computes it), k-medoids++ seeding, then the
alternating algorithm (`kmedoids.alternating` stands in for scikit-learn-extra, which
does not import with NumPy 2). artenc: `cluster_vectors(x, "auto")`, the whole sweep with
silhouette and gap statistic. Loss = sum of cosine distances to the nearest medoid over
all n works, compared at every k. Then artenc alone at n=100k.

    python scripts/bench_cluster.py [--n 5000] [--n-large 100000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _bench_common import clustered_vectors, load_note

K_RANGE = "5:100:2"


def workshop_sweep(x: np.ndarray, ks: list[int]) -> dict[int, float]:
    import kmedoids
    from sklearn.metrics import pairwise_distances

    from artenc.cluster import kmedoids_plusplus

    losses = {}
    for k in ks:
        diss = pairwise_distances(x, metric="cosine")
        start = kmedoids_plusplus(diss, k, np.random.default_rng(k))
        losses[k] = float(kmedoids.alternating(diss, start.astype(np.uintp)).loss)
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-large", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    args = ap.parse_args()
    print(f"# bench_cluster  {load_note()}")
    from artenc.cluster import cluster_vectors, parse_k_range

    x = clustered_vectors(args.n, args.dim, n_clusters=40, within=0.7, seed=3)
    ks = parse_k_range(K_RANGE)
    t0 = time.perf_counter()
    workshop = workshop_sweep(x, ks)
    t_workshop = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = cluster_vectors(x, "auto", k_range=K_RANGE)
    t_artenc = time.perf_counter() - t0
    ours = {row["k"]: row["inertia"] for row in result.sweep}
    worse = [k for k in ks if ours[k] > workshop[k] * (1 + 1e-6)]
    gain = np.array([(workshop[k] - ours[k]) / workshop[k] for k in ks])
    print(f"n={args.n}: workshop sweep {t_workshop:.1f} s, artenc --k auto {t_artenc:.1f} s, ratio "
          f"{t_workshop / t_artenc:.1f}x (target >= 20x); chosen k={result.k} (planted 40): {result.rule}")
    print(f"  loss vs workshop: artenc lower by {100 * gain.mean():.2f} % on average "
          f"(min {100 * gain.min():.2f} %, max {100 * gain.max():.2f} %); worse at k = {worse or 'none'}")
    del x
    if args.n_large:
        big = clustered_vectors(args.n_large, args.dim, n_clusters=40, within=0.7, seed=4)
        t0 = time.perf_counter()
        result = cluster_vectors(big, "auto", k_range=K_RANGE)
        print(f"n={args.n_large}: artenc --k auto {time.perf_counter() - t0:.1f} s (target <= 300 s), "
              f"k={result.k}, sample {result.sample_size}, all {len(result.labels)} works assigned")


if __name__ == "__main__":
    main()
