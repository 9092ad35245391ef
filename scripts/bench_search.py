"""Nearest-neighbour search: sklearn brute force (the workshop) vs artenc exact and approximate.

All-vs-all k=10 search over every vector of the collection. sklearn is timed on a random
sample of queries (its queries/second are flat in the number of queries); artenc's exact
index too, its approximate index on all queries. recall@10 is measured against exact.

    python scripts/bench_search.py [--n 100000] [--dim 1280] [--queries 2000] [--wikiart-store STORE]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _bench_common import SHARED, clustered_vectors, load_note


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def bench(name: str, x: np.ndarray, n_queries: int, k: int = 10) -> list[dict]:
    from sklearn.neighbors import NearestNeighbors

    from artenc.index import build_index

    rng = np.random.default_rng(0)
    q_idx = rng.choice(len(x), size=min(n_queries, len(x)), replace=False)
    q = x[q_idx]
    rows = []
    t0 = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    _, truth = nn.kneighbors(q)
    sk_qps = len(q) / (time.perf_counter() - t0)
    rows.append({"data": name, "method": "sklearn brute cosine", "build_s": 0.0, "qps": sk_qps, "recall@10": 1.0})
    truth = truth[:, 1:]  # drop self
    for kind in ("flat", "hnsw", "ivfpq", "lsh"):
        t0 = time.perf_counter()
        vindex = build_index(x, kind)
        build = time.perf_counter() - t0
        queries = q if kind == "flat" else x  # approximate: all-vs-all over every vector
        t0 = time.perf_counter()
        _, ids = vindex.search(queries, k + 1)
        qps = len(queries) / (time.perf_counter() - t0)
        found = ids[:, 1:] if kind == "flat" else ids[q_idx][:, 1:]
        rows.append({"data": name, "method": f"artenc {kind}", "build_s": build, "qps": qps,
                     "recall@10": recall_at(found, truth)})
        if kind == "hnsw":  # the same graph at other efSearch values (the default is 32)
            for ef in (16, 64):
                vindex.index.hnsw.efSearch = ef
                t0 = time.perf_counter()
                _, ids = vindex.search(x, k + 1)
                rows.append({"data": name, "method": f"artenc hnsw ef{ef}", "build_s": build,
                             "qps": len(x) / (time.perf_counter() - t0), "recall@10": recall_at(ids[q_idx][:, 1:], truth)})
        del vindex
    for r in rows:
        r["speedup"] = r["qps"] / sk_qps
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=2000, help="query sample for sklearn and exact")
    ap.add_argument("--wikiart-store", help="a store of ../shared/data/wikiart_style embeddings")
    args = ap.parse_args()
    print(f"# bench_search  {load_note()}")
    rows = bench(f"synthetic {args.n}x{args.dim}", clustered_vectors(args.n, args.dim), args.queries)
    if args.wikiart_store:
        from artenc.store import Store

        store = Store.open(args.wikiart_store)
        rows += bench(f"wikiart {len(store)}x{store.dim}", store.vectors, args.queries)
    elif not (SHARED / "wikiart_style").is_dir():
        print("(wikiart: ../shared/data absent, skipped)")
    else:
        print("(wikiart: pass --wikiart-store STORE, built with `artenc embed ../shared/data/wikiart_style/images`)")
    print(f"{'data':28s} {'method':22s} {'build s':>8s} {'queries/s':>10s} {'x sklearn':>9s} {'recall@10':>9s}")
    for r in rows:
        print(f"{r['data']:28s} {r['method']:22s} {r['build_s']:8.1f} {r['qps']:10.0f} {r['speedup']:9.1f} "
              f"{r['recall@10']:9.3f}")
    print("targets: exact >= 10x sklearn; approximate recall@10 >= 0.95 at >= 20x sklearn queries/s")


if __name__ == "__main__":
    main()
