"""Retrieval of photographed paintings (../shared/data/museum): top-1 / top-5 per query set,
through `similar` with and without `--verify`.

The database photos are embedded into a store; each query photo is a new file embedded
with the store's model. A query is right at top-n when one of the paintings it shows
(`bbdd_ids`) is among its n nearest works. Queries of paintings not in the database (-1)
are left out of the accuracy and counted.

    python scripts/bench_museum.py [--workdir DIR] [--verify-top 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from _bench_common import SHARED, embed_cached, load_note

MUSEUM = SHARED / "museum"


def accuracy(doc: dict, wanted: list[set[int]], id_of: dict[str, int]) -> tuple[float, float]:
    top1 = top5 = 0
    for res, ids in zip(doc["results"], wanted, strict=True):
        found = [id_of[nb["path"]] for nb in res["neighbors"]]
        top1 += bool(set(found[:1]) & ids)
        top5 += bool(set(found[:5]) & ids)
    return top1 / len(wanted), top5 / len(wanted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/artenc-bench-museum")
    ap.add_argument("--verify-top", type=int, default=30)
    args = ap.parse_args()
    if not MUSEUM.is_dir():
        print("../shared/data/museum absent: skipped")
        return
    print(f"# bench_museum  {load_note()}")
    from artenc.neighbors import similar

    db = pd.read_csv(MUSEUM / "db.csv")
    queries = pd.read_csv(MUSEUM / "queries.csv", dtype={"bbdd_ids": str})
    store = embed_cached([MUSEUM / p for p in db["path"]], Path(args.workdir) / "store")
    id_of = {str((MUSEUM / p).resolve()): int(i) for p, i in zip(db["path"], db["bbdd_id"], strict=True)}
    print(f"{'set':10s} {'n':>3s} {'absent':>6s} {'top1':>6s} {'top5':>6s} {'top1 +verify':>12s} "
          f"{'top5 +verify':>12s} {'s/query +verify':>15s}")
    for name, group in queries.groupby("set", sort=True):
        wanted = [{int(t) for t in s.split()} for s in group["bbdd_ids"]]
        keep = [bool(w - {-1}) for w in wanted]
        paths = [str(MUSEUM / p) for p, k in zip(group["path"], keep, strict=True) if k]
        wanted = [w - {-1} for w, k in zip(wanted, keep, strict=True) if k]
        plain = similar(store, paths, k=5)
        t0 = time.perf_counter()
        verified = similar(store, paths, k=5, verify=True, verify_top=args.verify_top)
        per_query = (time.perf_counter() - t0) / max(len(paths), 1)
        a1, a5 = accuracy(plain, wanted, id_of)
        v1, v5 = accuracy(verified, wanted, id_of)
        print(f"{name:10s} {len(paths):3d} {len(keep) - sum(keep):6d} {a1:6.2f} {a5:6.2f} {v1:12.2f} {v5:12.2f} "
              f"{per_query:15.2f}")
    print("target: qsd2_w2 top-1 >= 0.90 with --verify")


if __name__ == "__main__":
    main()
