"""Planted label errors on real paintings: does `artenc audit` rank the wrong labels first?

The test of issue 15: 800 WikiArt works (dev rows only, spread over the 7 styles), 20 of them
given another style at random (fixed seed). The store is embedded once (default model,
tf_efficientnet_lite0, ~2-3 min on 2 cores) under --work and reused. The audit's ranking
(`artenc.audit.label_issues`: cross-validated linear probe + leave-one-out kNN vote, averaged,
ranked by cleanlab's self-confidence) is compared with the issue's two baselines:

- "kNN disagreement": the majority of the k nearest neighbours has another label (a flag, no rank);
- "no neighbour shares the label": none of the k nearest has the work's label (a flag, no rank).

Prints, for each method, how many of the planted 20 are among the top 20 / 50 / 100 of its
ranking (flags: the flagged set, in row order), and precision / recall of what it flags.

    python scripts/bench_label_errors.py [--work /tmp/audit_bench] [--n 800] [--flips 20] [--seed 0]

Needs ../shared/data/wikiart_style (see its README); holdout rows are never read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from artenc.audit import knn_probabilities, label_issues
from artenc.labels import encode_labels
from artenc.store import Store

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikiart_style"
STYLES = 7


def pick_dev_rows(labels: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` dev rows spread evenly over the styles (the first n % styles styles get one more)."""
    dev = labels[labels["split"] == "dev"]
    styles = sorted(dev["style"].unique())
    per, extra = divmod(n, len(styles))
    parts = [dev[dev["style"] == s].sample(per + (i < extra), random_state=seed) for i, s in enumerate(styles)]
    return pd.concat(parts).sort_values("path").reset_index(drop=True)


def flip_labels(styles: np.ndarray, flips: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Give `flips` random works another style (uniform among the others); returns (labels, rows)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(styles), size=flips, replace=False))
    names = sorted(set(styles))
    given = styles.copy()
    for r in rows:
        given[r] = rng.choice([s for s in names if s != styles[r]])
    return given, rows


def build_store(work: Path, n: int, seed: int) -> Store:
    """The store of `n` dev works with their true styles (embedded once, then reused)."""
    from artenc.embedding import embed_folders

    store_dir = work / "store"
    if (store_dir / "meta.json").exists():
        return Store.open(store_dir)
    table = pick_dev_rows(pd.read_csv(DATA / "labels.csv"), n, seed)
    table["path"] = [str(DATA / p) for p in table["path"]]
    work.mkdir(parents=True, exist_ok=True)
    table.to_csv(work / "labels.csv", index=False)
    t0 = time.perf_counter()
    embed_folders(table["path"].tolist(), store_dir, labels=work / "labels.csv", progress=False)
    print(f"embedded {n} works in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return Store.open(store_dir)


def hits(ranking: np.ndarray, planted: set[int], top: int) -> int:
    return len(planted & set(ranking[:top].tolist()))


def planted_problem(store: Store, flips: int, seed: int) -> tuple[np.ndarray, np.ndarray, set[int], int]:
    """(vectors, given style codes with `flips` planted errors, planted rows, number of styles)."""
    true = store.items["style"].astype(str).to_numpy()
    if not (store.items["split"].astype(str) == "dev").all():
        raise SystemExit("holdout rows must never be used")
    given, rows = flip_labels(true, flips, seed)
    codes, classes = encode_labels(pd.DataFrame({"style": given}), ["style"])
    return np.asarray(store.vectors), codes[:, 0], set(rows.tolist()), len(classes["style"])


def planted_in_top(store: Store, *, flips: int = 20, seed: int = 0, top: int = 50, k: int = 10) -> int:
    """How many of the planted wrong labels the audit ranks among its `top` worst."""
    x, y, planted, _ = planted_problem(store, flips, seed)
    return hits(label_issues(x, y, k=k, seed=seed).ranking, planted, top)


def table(store: Store, flips: int, seed: int, k: int) -> None:
    x, y, planted, n_classes = planted_problem(store, flips, seed)
    results = []
    t0 = time.perf_counter()
    issues = label_issues(x, y, k=k, seed=seed)
    seconds = time.perf_counter() - t0
    results.append(("audit: probe + kNN, cleanlab", issues.ranking, np.flatnonzero(issues.is_issue)))
    for part in ("probe", "knn"):
        sub = label_issues(x, y, k=k, seed=seed, sources=(part,))
        results.append((f"{part} only, cleanlab", sub.ranking, np.flatnonzero(sub.is_issue)))
    # the issue's baselines: flags, in row order
    votes = knn_probabilities(x, y, n_classes, k=k, weighted=False)
    majority_other = np.flatnonzero(votes.argmax(axis=1) != y)
    none_shares = np.flatnonzero(votes[np.arange(len(y)), y] == 0)
    results.append((f"baseline: {k}-NN majority disagrees", majority_other, majority_other))
    results.append((f"baseline: none of {k} neighbours shares the label", none_shares, none_shares))
    print(f"{len(y)} WikiArt dev works, {len(planted)} planted wrong styles (seed {seed}); chance in the "
          f"top 50: {50 * len(planted) / len(y):.2f}; audit took {seconds:.1f} s\n")
    print("| method | top 20 | top 50 | top 100 | flagged | precision | recall |")
    print("|---|---|---|---|---|---|---|")
    for name, ranking, flags in results:
        found = len(planted & set(flags.tolist()))
        precision = found / len(flags) if len(flags) else 0.0
        print(f"| {name} | {hits(ranking, planted, 20)} | {hits(ranking, planted, 50)} | "
              f"{hits(ranking, planted, 100)} | {len(flags)} | {precision:.3f} | {found / len(planted):.3f} |")
    ranks = {int(r): i + 1 for i, r in enumerate(issues.ranking)}
    print("\nranks of the planted works in the audit:", sorted(ranks[r] for r in planted))
    print("(baselines are flags without a rank: their top N is the first N flagged works in row order)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/audit_bench", help="folder of the store (reused)")
    p.add_argument("--n", type=int, default=800)
    p.add_argument("--flips", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="the seed of the full table (rows and flips)")
    p.add_argument("--more-seeds", type=int, default=4, help="then top 20/50/100 of the audit for this many "
                                                             "other flip seeds")
    p.add_argument("-k", type=int, default=10, help="neighbours of the kNN parts and baselines")
    p.add_argument("--build-only", action="store_true")
    args = p.parse_args()
    if not (DATA / "labels.csv").exists():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    store = build_store(Path(args.work), args.n, args.seed)
    if args.build_only:
        return 0
    table(store, args.flips, args.seed, args.k)
    if args.more_seeds:
        print("\n| flip seed | top 20 | top 50 | top 100 |\n|---|---|---|---|")
        found = []
        for seed in range(args.seed, args.seed + args.more_seeds + 1):
            x, y, planted, _ = planted_problem(store, args.flips, seed)
            ranking = label_issues(x, y, k=args.k, seed=seed).ranking
            found.append([hits(ranking, planted, t) for t in (20, 50, 100)])
            print(f"| {seed} | " + " | ".join(map(str, found[-1])) + " |")
        print("| mean | " + " | ".join(f"{v:.1f}" for v in np.mean(found, axis=0)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
