"""Near-duplicate search: the workshop's all-pairs pandas table vs `artenc dedup --no-verify`.

The workshop: a cosine-similarity matrix, a pandas table of all n(n-1)/2 pairs, a filter
at 0.9. artenc: range search (exact blocked upper triangle <= 50k, IVF above) and
non-chaining groups. Same synthetic vectors (1 % planted near-copies), same threshold.
At n=100k artenc runs alone, as `artenc dedup` in a child process whose time and peak
memory (max RSS) are measured.

    python scripts/bench_dedup.py [--n-small 5000] [--n-large 100000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench_common import artenc_cmd, clustered_vectors, load_note, run_measured, vector_store


def workshop_pairs(x: np.ndarray, threshold: float):
    import pandas as pd
    from sklearn.metrics.pairwise import cosine_similarity

    sim = cosine_similarity(x)
    i, j = np.triu_indices(len(x), k=1)
    table = pd.DataFrame({"a": i, "b": j, "similarity": sim[i, j]})
    return table[table["similarity"] >= threshold]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-small", type=int, default=5000)
    ap.add_argument("--n-large", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    print(f"# bench_dedup  {load_note()}")
    from artenc.dedup import find_duplicates

    x = clustered_vectors(args.n_small, args.dim, n_clusters=100, seed=1, dup_share=0.01)
    times: dict[str, list[float]] = {"workshop": [], "artenc": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = vector_store(Path(tmp) / "small", x)
        for _ in range(2):  # first call cold (imports, page faults), second warm
            t0 = time.perf_counter()
            table = workshop_pairs(x, args.threshold)
            times["workshop"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            doc = find_duplicates(store, args.threshold, verify=False)
            times["artenc"].append(time.perf_counter() - t0)
    (w_cold, w_warm), (a_cold, a_warm) = times["workshop"], times["artenc"]
    print(f"n={args.n_small}: workshop pandas all pairs {w_cold:.2f} s cold / {w_warm:.2f} s warm ({len(table)} pairs >= "
          f"{args.threshold}); artenc {a_cold:.3f} s / {a_warm:.3f} s ({doc['candidate_pairs']} pairs, "
          f"{len(doc['groups'])} groups); ratio {w_cold / a_cold:.1f}x cold, {w_warm / a_warm:.1f}x warm (target >= 50x)")
    del x, table

    if args.n_large:
        with tempfile.TemporaryDirectory() as tmp:
            planted: list = []
            big = clustered_vectors(args.n_large, args.dim, n_clusters=1000, seed=2, dup_share=0.01, planted=planted)
            vector_store(Path(tmp) / "large", big)
            del big
            seconds, peak_mb, out = run_measured(artenc_cmd("dedup", str(Path(tmp) / "large"), "--no-verify",
                                                            "--threshold", str(args.threshold), "--json"))
            doc = json.loads(out)
        found = set()
        for g in doc["groups"]:
            rows = [int(Path(p).stem) for p in [g["keep"], *(d["path"] for d in g["duplicates"])]]
            found |= {frozenset((a, b)) for a in rows for b in rows if a != b}
        hit = sum(frozenset(p) in found for p in planted)
        print(f"n={args.n_large}: artenc dedup {seconds:.1f} s, peak memory {peak_mb:.0f} MB "
              f"({doc['candidate_pairs']} pairs, {len(doc['groups'])} groups; planted near-copies found "
              f"{hit}/{len(planted)})  (targets <= 60 s, <= 2048 MB)")


if __name__ == "__main__":
    main()
