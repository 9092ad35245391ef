"""Benchmark `artenc embed` against the img2vec-style baseline, in one run.

(a) baseline: eager PyTorch, batch 32, torchvision PIL preprocessing in the main process;
(b) the pure forward pass of the runtime artenc picks (upper bound, pre-decoded input);
(c) `artenc embed` end to end (discovery, hashing, decoding in workers, store writes),
    in a fresh process as a real run.

Datasets: ../shared/data/wikiart_style (224-px JPEGs; skipped when absent) and large
~2000-px JPEGs generated here. Prints images/s and the ratios; --json for a document.

    python scripts/bench_embed.py [--n 1000] [--n-large 150] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from artenc.embedding import embed_folders
from artenc.images import discover_images
from artenc.runtime import create_encoder

ROOT = Path(__file__).resolve().parents[1]
WIKIART = ROOT.parent / "shared" / "data" / "wikiart_style"


def baseline_img2vec(paths: list[Path], batch_size: int = 32) -> float:
    """img2vec's way: torchvision transforms on PIL in the main process, eager torch forward."""
    from torchvision import transforms

    from artenc.backbones import create_backbone

    b = create_backbone("tf_efficientnet_lite0")
    pre = b.preprocess
    tf = transforms.Compose([
        transforms.Resize(pre.resize_to, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(pre.size),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])
    model = b.model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]])
            model.forward_head(model.forward_features(batch), pre_logits=True)
    return len(paths) / (time.perf_counter() - start)


def pure_forward(encoder, n: int, batch_size: int) -> float:
    """The runtime's forward pass alone on pre-decoded uint8 batches."""
    size = encoder.preprocess.size
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size), dtype=np.uint8)
    encoder.encode(batch)  # warm-up
    done, start = 0, time.perf_counter()
    while done < n:
        encoder.encode(batch)
        done += batch_size
    return done / (time.perf_counter() - start)


def end_to_end(folder: Path, workers: int | None, batch_size: int) -> tuple[float, int]:
    """`embed_folders` timed in a fresh process, as `artenc embed` runs (model load excluded,
    as for the other two measurements): forked decoding workers then share no memory with a
    model that has already run, which would cost copy-on-write faults no real run pays."""
    cmd = [sys.executable, __file__, "--_e2e", str(folder), "--batch-size", str(batch_size)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    return doc["img_s"], doc["images"]


def _e2e_child(folder: Path, workers: int | None, batch_size: int) -> None:
    encoder = create_encoder(runtime="auto")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = embed_folders([folder], Path(tmp) / "store", encoder=encoder, workers=workers,
                               batch_size=batch_size, progress=False)
        elapsed = time.perf_counter() - start
    print(json.dumps({"img_s": report.embedded / elapsed, "images": report.embedded}))


def make_large_jpegs(folder: Path, n: int) -> None:
    """~2000-px photo-like JPEGs (smooth gradients + noise, quality 90)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:1500, 0:2000].astype(np.float32)
    for i in range(n):
        f = rng.uniform(0.002, 0.02, 3)
        arr = np.stack([127 + 100 * np.sin(xx * f[c] + yy * f[(c + 1) % 3] + i) for c in range(3)], -1)
        arr += rng.normal(0, 12, arr.shape).astype(np.float32)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"large_{i:04d}.jpg", quality=90)


def bench(name: str, folder: Path, n: int, encoder, workers: int | None, batch_size: int) -> dict:
    paths = discover_images([folder])[:n]
    sub = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    for p in paths:  # benchmark exactly these n files, via symlinks
        (sub / p.name).symlink_to(p)
    base = baseline_img2vec(paths)
    fwd = pure_forward(encoder, max(256, min(n, 1024)), batch_size)
    e2e, count = end_to_end(sub, workers, batch_size)
    return {"dataset": name, "images": count, "baseline_img_s": round(base, 1), "forward_img_s": round(fwd, 1),
            "artenc_img_s": round(e2e, 1), "speedup_vs_baseline": round(e2e / base, 2),
            "fraction_of_forward": round(e2e / fwd, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="WikiArt images to use")
    ap.add_argument("--n-large", type=int, default=150, help="generated 2000-px JPEGs")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_e2e", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._e2e:
        _e2e_child(args._e2e, args.workers, args.batch_size)
        return 0
    encoder = create_encoder(runtime="auto")
    rows = []
    if WIKIART.is_dir():
        rows.append(bench("wikiart_224px", WIKIART, args.n, encoder, args.workers, args.batch_size))
    else:
        print(f"skipping WikiArt: {WIKIART} not found", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        make_large_jpegs(Path(tmp), args.n_large)
        rows.append(bench("generated_2000px", Path(tmp), args.n_large, encoder, args.workers, args.batch_size))
    if args.json:
        print(json.dumps({"runtime": encoder.runtime, "device": encoder.device, "results": rows}, indent=2))
        return 0
    print(f"runtime={encoder.runtime} device={encoder.device} workers={args.workers or 'default'}")
    print("| dataset | n | baseline img/s | forward img/s | artenc img/s | vs baseline | of forward |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['images']} | {r['baseline_img_s']} | {r['forward_img_s']} | "
              f"{r['artenc_img_s']} | {r['speedup_vs_baseline']}x | {r['fraction_of_forward']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
