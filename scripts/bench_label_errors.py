"""Planted label errors on real paintings: does `artenc audit` rank the wrong labels first?

The test of issue 15: 800 WikiArt works (dev rows only, spread over the 7 styles), 20 of them
given another style at random (fixed seed). The works are embedded twice, once each, under
--work, then reused:

- `store/`: the default model (pooled tf_efficientnet_lite0 vectors, 1,280-d; ~2-3 min on 2 cores);
- `texture/`: the audit recipe, `lite0-texture` (texture statistics of the same frozen lite0,
  32,492-d; 20-110 s): `artenc embed IMAGES --model lite0-texture --labels L.csv --out STORE`, then
  `artenc audit STORE`.

The audit's ranking (`artenc.audit.label_issues`: cross-validated linear probe + leave-one-out
kNN vote, averaged, ranked by cleanlab's self-confidence) is compared with the issue's two
baselines:

- "kNN disagreement": the majority of the k nearest neighbours has another label (a flag, no rank);
- "no neighbour shares the label": none of the k nearest has the work's label (a flag, no rank).

Prints, for the recipe's store, how many of the planted 20 are among the top 20 / 50 / 100 of
each ranking (flags: the flagged set, in row order) and precision / recall of what it flags;
then, for flip seeds 0-4, the audit's top 20 / 50 / 100 on both stores in the same run, with the
audit's wall and CPU seconds and the load average.

    python scripts/bench_label_errors.py [--work /tmp/audit_bench] [--n 800] [--flips 20] [--seed 0]

Needs ../shared/data/wikiart_style (see its README); holdout rows are never read.
"""

from __future__ import annotations

import argparse
import os
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
RECIPE_MODEL = "lite0-texture"  # the audit recipe: texture statistics (artenc.backbones.features)
STORES = {"pooled lite0": ("store", "tf_efficientnet_lite0"), "texture recipe": ("texture", RECIPE_MODEL)}


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


def build_store(work: Path, n: int, seed: int, model: str = RECIPE_MODEL) -> Store:
    """The store of `n` dev works with their true styles, embedded with `model` (once, then reused):
    `work/texture` for the recipe's model, `work/store` for the default pooled lite0."""
    from artenc.embedding import embed_folders

    folder = next((name for name, m in STORES.values() if m == model), model.replace("/", "_"))
    store_dir = work / folder
    if (store_dir / "meta.json").exists():
        return Store.open(store_dir)
    table_path = work / "labels.csv"
    if table_path.exists():  # the rows chosen when the first store was built
        table = pd.read_csv(table_path)
    else:
        table = pick_dev_rows(pd.read_csv(DATA / "labels.csv"), n, seed)
        table["path"] = [str(DATA / p) for p in table["path"]]
        work.mkdir(parents=True, exist_ok=True)
        table.to_csv(table_path, index=False)
    t0 = time.perf_counter()
    embed_folders(table["path"].tolist(), store_dir, model=model, labels=table_path, progress=False)
    print(f"embedded {len(table)} works with {model} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
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


def seeds_table(stores: dict[str, Store], flips: int, seeds: range, k: int) -> None:
    """Top 20 / 50 / 100 of the audit for each flip seed, every store in the same run."""
    names = list(stores)
    print("\n| flip seed | " + " | ".join(f"{n}: top 20 | top 50 | top 100" for n in names) + " |")
    print("|---|" + "---|---|---|" * len(names))
    found = {n: [] for n in names}
    spent = {n: [0.0, 0.0] for n in names}
    for seed in seeds:
        row = []
        for name, store in stores.items():
            x, y, planted, _ = planted_problem(store, flips, seed)
            t0, c0 = time.perf_counter(), time.process_time()
            ranking = label_issues(x, y, k=k, seed=seed).ranking
            spent[name][0] += time.perf_counter() - t0
            spent[name][1] += time.process_time() - c0
            found[name].append([hits(ranking, planted, t) for t in (20, 50, 100)])
            row += found[name][-1]
        print(f"| {seed} | " + " | ".join(map(str, row)) + " |")
    means = [f"{v:.1f}" for n in names for v in np.mean(found[n], axis=0)]
    print("| mean | " + " | ".join(means) + " |")
    for name in names:
        wall, cpu = (v / len(seeds) for v in spent[name])
        top50 = [f[1] for f in found[name]]
        print(f"{name} ({stores[name].meta['model']}, {stores[name].meta['dim']}-d): top 50 = "
              f"{'/'.join(map(str, top50))} (mean {np.mean(top50):.1f}, min {min(top50)}); "
              f"audit {wall:.1f} s wall, {cpu:.1f} s CPU per seed")
    print("load average (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/audit_bench", help="folder of the stores (reused)")
    p.add_argument("--n", type=int, default=800)
    p.add_argument("--flips", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="the seed of the rows and of the full table")
    p.add_argument("--more-seeds", type=int, default=4, help="then the audit of both stores for this many "
                                                             "other flip seeds")
    p.add_argument("-k", type=int, default=10, help="neighbours of the kNN parts and baselines")
    p.add_argument("--build-only", action="store_true")
    args = p.parse_args()
    if not (DATA / "labels.csv").exists():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    stores = {name: build_store(Path(args.work), args.n, args.seed, model) for name, (_, model) in STORES.items()}
    if args.build_only:
        return 0
    print(f"## the audit recipe: {RECIPE_MODEL} vectors, then the audit\n")
    table(stores["texture recipe"], args.flips, args.seed, args.k)
    seeds_table(stores, args.flips, range(args.seed, args.seed + args.more_seeds + 1), args.k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
