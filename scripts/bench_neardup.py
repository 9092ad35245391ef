"""Edited copies of real paintings, flips included: verified dedup, today's settings against the new.

Takes `--works` works of ../shared/data/wikiart_style (split=dev only) and writes an edited
copy of the first `--copies` of them, the same number of each of 10 edit kinds (EDITS: crop,
rotation, resize, exposure, JPEG quality, horizontal flip (half of them also cropped),
grayscale, blur, border, and all of crop+rotation+resize+exposure at once); every copy is
saved at JPEG quality 30-60 (the "jpeg" kind is that alone). Embeds them all once (the store
is reused), then for each verification setting (`artenc.verify.LEGACY`, today's up to issue
15, and `artenc.verify.COPIES`) runs `find_duplicates` with a cold keypoint cache (a fresh
keypoints folder) and prints seconds, precision and recall over duplicate pairs, the recall
of flipped copies and how many pairs matched mirrored. A predicted pair is right when it is
(original, its copy).

    python scripts/bench_neardup.py [--works 800] [--copies 200] [--workdir DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from _bench_common import SHARED, load_note
from PIL import Image, ImageEnhance, ImageFilter, ImageOps


def crop(img: Image.Image, rng: np.random.Generator, lo: float = 0.75, hi: float = 0.92) -> Image.Image:
    w, h = img.size
    f = rng.uniform(lo, hi)
    cw, ch = int(w * f), int(h * f)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.rotate(float(rng.choice([-1, 1]) * rng.uniform(2, 5)), resample=Image.BICUBIC)


def resize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    s = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.6)
    return img.resize((max(32, int(img.width * s)), max(32, int(img.height * s))), Image.BICUBIC)


def exposure(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.4))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.7, 1.3))


def combined(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = rotate(crop(img, rng), rng)
    s = rng.uniform(0.6, 1.3)
    out = out.resize((max(32, int(out.width * s)), max(32, int(out.height * s))), Image.BICUBIC)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))


def flip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = ImageOps.mirror(img)
    return crop(out, rng, 0.85, 0.97) if rng.random() < 0.5 else out


def border(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    pad = int(max(img.size) * rng.uniform(0.05, 0.12))
    return ImageOps.expand(img, border=pad, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))


EDITS = {
    "crop": crop,
    "rotate": rotate,
    "resize": resize,
    "exposure": exposure,
    "jpeg": lambda img, rng: img,
    "flip": flip,
    "grayscale": lambda img, rng: ImageOps.grayscale(img).convert("RGB"),
    "blur": lambda img, rng: img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 1.5)))),
    "border": border,
    "combined": combined,
}


def make_collection(folder: Path, n_works: int, n_copies: int, seed: int) -> pd.DataFrame:
    """Write the works and copies into `folder` (once); returns (original, copy, kind) per copy."""
    truth_csv = folder / "truth.csv"
    if truth_csv.exists():
        return pd.read_csv(truth_csv)
    labels = pd.read_csv(SHARED / "wikiart_style" / "labels.csv")
    dev = labels[labels["split"] == "dev"].sample(n_works, random_state=seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    kinds = list(EDITS)
    rows = []
    for r, rel in enumerate(dev["path"]):
        img = Image.open(SHARED / "wikiart_style" / rel).convert("RGB")
        orig = images / f"w{r:05d}.jpg"
        img.save(orig, quality=95)
        if r < n_copies:
            kind = kinds[r % len(kinds)]
            copy = images / f"w{r:05d}_{kind}.jpg"
            EDITS[kind](img, rng).save(copy, quality=int(rng.integers(30, 61)))
            rows.append({"original": str(orig.resolve()), "copy": str(copy.resolve()), "kind": kind})
    truth = pd.DataFrame(rows)
    truth.to_csv(truth_csv, index=False)
    return truth


def score(report, truth: pd.DataFrame) -> dict:
    predicted = {frozenset((p.a_path, p.b_path)): p for p in report.pair_list}
    wanted = {frozenset((o, c)): k for o, c, k in zip(truth["original"], truth["copy"], truth["kind"], strict=True)}
    hits = [wanted[key] for key in predicted if key in wanted]
    flips = int((truth["kind"] == "flip").sum())
    missed = Counter(wanted.values()) - Counter(hits)
    return {"precision": len(hits) / max(len(predicted), 1), "recall": len(hits) / len(wanted),
            "flip_recall": hits.count("flip") / max(flips, 1), "pairs": len(predicted),
            "mirrored": sum(p.mirrored for p in predicted.values()),
            "missed": ", ".join(f"{k} {n}" for k, n in sorted(missed.items())) or "none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--works", type=int, default=800)
    ap.add_argument("--copies", type=int, default=200)
    ap.add_argument("--workdir", default="/tmp/artenc-bench-neardup")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="verification processes (default: one per core)")
    ap.add_argument("--settings", default="legacy,copies", help="comma-separated: legacy, copies, photos")
    args = ap.parse_args()
    if not (SHARED / "wikiart_style").is_dir():
        print("../shared/data/wikiart_style absent: skipped")
        return
    from artenc import verify
    from artenc.dedup import find_duplicates
    from artenc.embedding import embed_folders
    from artenc.store import Store

    folder = Path(args.workdir) / f"w{args.works}-c{args.copies}-s{args.seed}"
    truth = make_collection(folder, args.works, args.copies, args.seed)
    t0 = time.perf_counter()
    if not (folder / "store" / "meta.json").exists():
        embed_folders([folder / "images"], folder / "store", progress=False)
    store = Store.open(folder / "store")
    print(f"# bench_neardup  {load_note()}")
    print(f"{len(store)} images: {args.works} works, {len(truth)} edited copies "
          f"({', '.join(f'{k} {n}' for k, n in truth['kind'].value_counts(sort=False).items())}); "
          f"store ready in {time.perf_counter() - t0:.1f} s")
    print("| settings | cold seconds | precision | recall | flip recall | pairs | mirrored | candidates | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    workers = verify.default_workers() if args.workers is None else args.workers
    verify._run(abs, list(range(-4 * max(workers, 1), 0)), workers)  # worker processes started for every run alike
    seconds = {}
    for name in args.settings.split(","):
        settings = {"legacy": verify.LEGACY, "copies": verify.COPIES, "photos": verify.PHOTOS}[name]
        shutil.rmtree(store.keypoints_dir / settings.cache_version, ignore_errors=True)  # cold cache
        t0 = time.perf_counter()
        report = find_duplicates(store, workers=workers, verify_settings=settings)
        seconds[name] = time.perf_counter() - t0
        s = score(report, truth)
        print(f"| {name} ({settings.describe()}) | {seconds[name]:.1f} | {s['precision']:.3f} | {s['recall']:.3f} | "
              f"{s['flip_recall']:.2f} | {s['pairs']} | {s['mirrored']} | {report.candidate_pairs} | "
              f"{load_note().split('load avg ')[1]} |")
        print(f"<!-- {name} missed: {s['missed']} -->")
    if {"legacy", "copies"} <= seconds.keys():
        print(f"speed-up, cold: {seconds['legacy'] / seconds['copies']:.1f}x")
    print("targets (copies): precision >= 0.99, recall >= 0.90, >= 5x faster cold than legacy")


if __name__ == "__main__":
    main()
