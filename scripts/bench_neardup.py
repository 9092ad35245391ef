"""Edited copies of real paintings: precision and recall of `dedup`, verified and embedding-only.

Takes `--originals` works of ../shared/data/wikiart_style (split=dev only), writes one
edited copy of each (crop to 75-92 %, rotation up to 3 degrees, resize, brightness and
contrast changes, JPEG quality 30-60), adds `--distractors` other dev works, embeds them
all and runs dedup. A predicted pair is right when it is (original, its copy).

    python scripts/bench_neardup.py [--originals 200] [--distractors 800] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _bench_common import SHARED, load_note
from PIL import Image, ImageEnhance


def edit(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    f = rng.uniform(0.75, 0.92)
    cw, ch = int(w * f), int(h * f)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    out = out.rotate(float(rng.uniform(-3, 3)), resample=Image.BICUBIC, expand=False)
    s = rng.uniform(0.6, 1.3)
    out = out.resize((max(32, int(out.width * s)), max(32, int(out.height * s))), Image.BICUBIC)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))


def make_collection(workdir: Path, n_orig: int, n_distract: int, seed: int) -> set[frozenset[str]]:
    labels = pd.read_csv(SHARED / "wikiart_style" / "labels.csv")
    dev = labels[labels["split"] == "dev"].sample(n_orig + n_distract, random_state=seed)
    images = workdir / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = set()
    for r, rel in enumerate(dev["path"]):
        src = SHARED / "wikiart_style" / rel
        img = Image.open(src).convert("RGB")
        orig = images / f"w{r:05d}.jpg"
        img.save(orig, quality=95)
        if r < n_orig:
            copy = images / f"w{r:05d}_copy.jpg"
            edit(img, rng).save(copy, quality=int(rng.integers(30, 61)))
            truth.add(frozenset((str(orig.resolve()), str(copy.resolve()))))
    return truth


def score(doc: dict, truth: set[frozenset[str]]) -> tuple[float, float, int]:
    predicted = set()
    for g in doc["groups"]:
        members = [g["keep"], *(d["path"] for d in g["duplicates"])]
        predicted |= {frozenset(p) for p in itertools.combinations(members, 2)}
    tp = len(predicted & truth)
    return tp / max(len(predicted), 1), tp / len(truth), len(predicted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--originals", type=int, default=200)
    ap.add_argument("--distractors", type=int, default=800)
    ap.add_argument("--workdir", default="/tmp/artenc-bench-neardup")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--low-threshold", type=float, default=None,
                    help="also verify every pair >= this (e.g. 0.6: slow, all-pairs candidates)")
    args = ap.parse_args()
    if not (SHARED / "wikiart_style").is_dir():
        print("../shared/data/wikiart_style absent: skipped")
        return
    print(f"# bench_neardup  {load_note()}")
    from artenc.dedup import find_duplicates
    from artenc.embedding import embed_folders
    from artenc.store import Store

    workdir = Path(args.workdir) / f"o{args.originals}-d{args.distractors}-s{args.seed}"
    truth = make_collection(workdir, args.originals, args.distractors, args.seed)
    t0 = time.perf_counter()
    if not (workdir / "store" / "meta.json").exists():
        embed_folders([workdir / "images"], workdir / "store", progress=False)
    store = Store.open(workdir / "store")
    print(f"{len(store)} images ({args.originals} edited copies), embedding {time.perf_counter() - t0:.1f} s")
    print(f"{'mode':44s} {'precision':>9s} {'recall':>7s} {'pairs':>6s} {'candidates':>10s} {'seconds':>8s}")
    runs = [("embedding only, threshold 0.9", dict(threshold=0.9, verify=False)),
            ("embedding only, threshold 0.8", dict(threshold=0.8, verify=False)),
            ("embedding only, threshold 0.75", dict(threshold=0.75, verify=False)),
            ("verified, candidates >= 0.75 only (old)", dict(verify=True, top_m=0)),
            ("verified (default: >= 0.75 or top-5 >= 0.55)", dict(verify=True)),
            ("verified default (cached keypoints)", dict(verify=True))]
    if args.low_threshold:
        runs.append((f"verified, candidates >= {args.low_threshold}", dict(threshold=args.low_threshold, verify=True,
                                                                            top_m=0)))
    for name, kwargs in runs:
        t0 = time.perf_counter()
        doc = find_duplicates(store, **kwargs)
        seconds = time.perf_counter() - t0
        p, r, n = score(doc, truth)
        print(f"{name:44s} {p:9.3f} {r:7.3f} {n:6d} {doc['candidate_pairs']:10d} {seconds:8.1f}")
    print("targets (verified): precision >= 0.95, recall >= 0.90")


if __name__ == "__main__":
    main()
