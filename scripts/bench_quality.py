"""What measuring image quality while embedding costs: `artenc embed` with and without it.

Embeds the same files into a fresh store with quality scores (`embed_folders(quality=True)`,
the default of `artenc embed`) and without (`quality=False`), alternating the two so a change
of machine load hits both, `--rounds` times each after one warm-up run, with decoding workers (the default) and
with `--workers 0` (decoding in the embedding process: the cost is not hidden behind the
model). Prints seconds per run, the ratio of the medians (with / without), the time of
`artenc.quality.image_stats` alone per image, and the load average before and after.

Files: `--n` WikiArt dev paintings (224 px JPEG, ../shared/data/wikiart_style; generated
paintings when absent) and `--n-large` generated 1600 x 1200 JPEGs (DCT-scaled decoding).

    python scripts/bench_quality.py [--n 200] [--n-large 50] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from artenc.embedding import embed_folders
from artenc.images import load_image
from artenc.quality import image_stats
from artenc.runtime import create_encoder

ROOT = Path(__file__).resolve().parents[1]
WIKIART = ROOT.parent / "shared" / "data" / "wikiart_style"


def synthetic(seed: int, size: tuple[int, int]) -> Image.Image:
    """Smooth colour fields with noise: a stand-in painting (no test helpers in scripts)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([128 + 80 * np.sin(xx * rng.uniform(0.002, 0.02) + c + yy * rng.uniform(0.002, 0.02))
                    for c in range(3)], axis=-1)
    arr += rng.normal(0, 12, arr.shape[:2])[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_folder(folder: Path, n: int, n_large: int) -> list[Path]:
    folder.mkdir(parents=True)
    if (WIKIART / "labels.csv").is_file():
        labels = pd.read_csv(WIKIART / "labels.csv")
        for i, rel in enumerate(labels[labels["split"] == "dev"].sample(n, random_state=1)["path"]):
            os.symlink(WIKIART / rel, folder / f"wikiart_{i:04d}.jpg")
    else:
        for i in range(n):
            synthetic(i, (224, 224)).save(folder / f"small_{i:04d}.jpg", quality=90)
    for i in range(n_large):
        synthetic(10_000 + i, (1600, 1200)).save(folder / f"large_{i:04d}.jpg", quality=90)
    return sorted(folder.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-large", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    encoder = create_encoder("tf_efficientnet_lite0", runtime="onnx", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_folder(Path(tmp) / "imgs", args.n, args.n_large)
        t0 = time.perf_counter()
        for f in files:
            image_stats(load_image(f, draft_size=encoder.preprocess.resize_to))
        decode_and_stats = (time.perf_counter() - t0) / len(files)
        t0 = time.perf_counter()
        for f in files:
            load_image(f, draft_size=encoder.preprocess.resize_to)
        decode_only = (time.perf_counter() - t0) / len(files)
        results = {}
        for workers in (None, 0):
            seconds: dict[bool, list[float]] = {True: [], False: []}
            embed_folders([Path(tmp) / "imgs"], Path(tmp) / f"warm-{workers}", encoder=encoder, workers=workers,
                          progress=False)  # warm-up, not counted: file cache, worker start-up paths
            for r in range(args.rounds):
                for quality in (True, False) if r % 2 == 0 else (False, True):
                    out = Path(tmp) / f"store-{workers}-{quality}-{r}"
                    t0 = time.perf_counter()
                    embed_folders([Path(tmp) / "imgs"], out, encoder=encoder, workers=workers, progress=False,
                                  quality=quality)
                    seconds[quality].append(time.perf_counter() - t0)
            with_q, without = statistics.median(seconds[True]), statistics.median(seconds[False])
            results["default workers" if workers is None else "workers 0"] = {
                "seconds_with": [round(s, 2) for s in seconds[True]],
                "seconds_without": [round(s, 2) for s in seconds[False]],
                "ratio_of_medians": round(with_q / without, 3),
            }
    doc = {"files": len(files), "wikiart_or_small": args.n, "large_1600x1200": args.n_large,
           "image_stats_ms_per_image": round((decode_and_stats - decode_only) * 1000, 2),
           "runs": results, "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
        return
    print(f"{doc['files']} files; image_stats alone: {doc['image_stats_ms_per_image']} ms per image "
          f"(decode + stats - decode)")
    for name, r in results.items():
        print(f"{name}: with quality {r['seconds_with']} s, without {r['seconds_without']} s, "
              f"ratio of medians {r['ratio_of_medians']}")
    print(f"load average before {doc['load_average_before']}, after {doc['load_average_after']} "
          f"({doc['cpus']} CPUs)")


if __name__ == "__main__":
    main()
