"""Benchmark `artenc embed` against the img2vec-style baseline, in one run.

(a) baseline: eager PyTorch, batch 32, torchvision PIL preprocessing in the main process;
(b) the pure forward pass of the runtime artenc picks (upper bound, pre-decoded input);
(c) `artenc embed` end to end (discovery, hashing, decoding and quality scores in workers,
    store writes), in a fresh process as a real run;
(d) float32 vs INT8 ONNX Runtime (`runtime="onnx-int8"`): forward rate, end-to-end rate, cosine
    of the INT8 vectors to the float32 ones and WikiArt P@10 (style, leave-one-out over the
    dev rows only; `artenc.evaluate.evaluate_arrays`).
With --before DIR, (c) also runs on the artenc source tree DIR/src (an older commit, e.g.
`git worktree add DIR COMMIT`), alternately with this tree, --rounds times each, against the
same forward rate: the before/after ratio of one run. With --rounds K, (b) is measured before
each round and the best of the K is the forward rate (the one the fractions divide by; the
end-to-end rates are the means of their rounds).

Each rate is given per wall-clock second and per CPU second (all threads and decoding workers
counted: "throughput per core", which a loaded machine disturbs far less); the load average is
printed before and after. Datasets: ../shared/data/wikiart_style (224-px JPEGs; skipped when
absent) and large ~2000-px JPEGs generated here. --json for one document.

    python scripts/bench_embed.py [--n 1000] [--n-large 150] [--n-eval 4200] [--workers N] [--json]
        [--n-baseline N] [--no-int8] [--before DIR --rounds K]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from artenc.embedding import embed_folders
from artenc.evaluate import evaluate_arrays
from artenc.images import decode_crop, discover_images
from artenc.runtime import create_encoder

ROOT = Path(__file__).resolve().parents[1]
WIKIART = ROOT.parent / "shared" / "data" / "wikiart_style"


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished children (decoding workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Rate:
    """Images per wall-clock second and per CPU second of the timed block."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def done(self, n: int) -> tuple[float, float]:
        return n / (time.perf_counter() - self.wall), n / max(cpu_seconds() - self.cpu, 1e-9)


def baseline_img2vec(paths: list[Path], batch_size: int = 32) -> tuple[float, float]:
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
    rate = Rate()
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]])
            model.forward_head(model.forward_features(batch), pre_logits=True)
    return rate.done(len(paths))


def pure_forward(encoder, n: int, batch_size: int) -> tuple[float, float]:
    """The runtime's forward pass alone on pre-decoded uint8 batches: (img/s, img per CPU s)."""
    size = encoder.preprocess.size
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size), dtype=np.uint8)
    encoder.encode(batch)  # warm-up
    done, rate = 0, Rate()
    while done < n:
        encoder.encode(batch)
        done += batch_size
    return rate.done(done)


def end_to_end(folder: Path, workers: int | None, batch_size: int, runtime: str = "auto",
               src: Path | None = None) -> dict:
    """`embed_folders` timed in a fresh process, as `artenc embed` runs (model load excluded,
    as for the other two measurements): forked decoding workers then share no memory with a
    model that has already run, which would cost copy-on-write faults no real run pays.
    `src`: run the artenc source tree found there instead of the installed one.
    Returns {"img_s", "cpu_img_s" (the child and its decoding workers), "images"}."""
    cmd = [sys.executable, __file__, "--_e2e", str(folder), "--batch-size", str(batch_size), "--runtime", runtime]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _e2e_child(folder: Path, workers: int | None, batch_size: int, runtime: str) -> None:
    encoder = create_encoder(runtime=runtime)
    with tempfile.TemporaryDirectory() as tmp:
        rate = Rate()
        report = embed_folders([folder], Path(tmp) / "store", encoder=encoder, workers=workers,
                               batch_size=batch_size, progress=False)
        img_s, cpu_img_s = rate.done(report.embedded)
    print(json.dumps({"img_s": img_s, "cpu_img_s": cpu_img_s, "images": report.embedded}))


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


def bench(name: str, folder: Path, n: int, encoder, workers: int | None, batch_size: int,
          n_baseline: int | None = None, before: Path | None = None, rounds: int = 1) -> dict:
    """One dataset: baseline, forward and end-to-end rates (with `before`, the end-to-end rate of
    that source tree too, run alternately with this one; `rounds` rounds, each with a forward
    measurement: the forward rate is the best of them, the end-to-end rates are the means)."""
    paths = discover_images([folder])[:n]
    sub = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    for p in paths:  # benchmark exactly these n files, via symlinks
        (sub / p.name).symlink_to(p)
    base, base_cpu = baseline_img2vec(paths[:n_baseline])
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    forwards = []
    for _ in range(rounds):
        forwards.append(pure_forward(encoder, max(256, min(n, 1024)), batch_size))
        if before:
            runs["before"].append(end_to_end(sub, workers, batch_size, src=before / "src"))
        runs["after"].append(end_to_end(sub, workers, batch_size))
    fwd, fwd_cpu = max(f[0] for f in forwards), max(f[1] for f in forwards)
    e2e = {k: float(np.mean([r[k] for r in runs["after"]])) for k in ("img_s", "cpu_img_s")}
    e2e["images"] = runs["after"][0]["images"]
    extra = {}
    if before:
        b_img, b_cpu = (float(np.mean([r[k] for r in runs["before"]])) for k in ("img_s", "cpu_img_s"))
        extra = {"before_artenc_img_s": round(b_img, 1), "before_artenc_cpu_img_s": round(b_cpu, 1),
                 "before_fraction_of_forward": round(b_img / fwd, 2),
                 "before_cpu_fraction_of_forward": round(b_cpu / fwd_cpu, 2),
                 "runs": {k: [[round(r["img_s"], 1), round(r["cpu_img_s"], 1)] for r in v] for k, v in runs.items()}}
    if rounds > 1:
        extra["forward_runs"] = [[round(w, 1), round(c, 1)] for w, c in forwards]
    return {**extra, "dataset": name, "images": e2e["images"], "baseline_img_s": round(base, 1),
            "baseline_cpu_img_s": round(base_cpu, 1), "forward_img_s": round(fwd, 1),
            "forward_cpu_img_s": round(fwd_cpu, 1), "artenc_img_s": round(e2e["img_s"], 1),
            "artenc_cpu_img_s": round(e2e["cpu_img_s"], 1),
            "speedup_vs_baseline": round(e2e["img_s"] / base, 2),
            "cpu_speedup_vs_baseline": round(e2e["cpu_img_s"] / base_cpu, 2),
            "fraction_of_forward": round(e2e["img_s"] / fwd, 2),
            "cpu_fraction_of_forward": round(e2e["cpu_img_s"] / fwd_cpu, 2), "folder": str(sub)}


def bench_int8(fp32, folder: Path | None, n_eval: int, workers: int | None, batch_size: int) -> dict:
    """float32 vs INT8 ONNX Runtime: forward and end-to-end rates, cosine of the vectors, and
    WikiArt style P@10 over the first `n_eval` dev rows (leave-one-out; holdout rows never read)."""
    int8 = create_encoder(runtime="onnx-int8")  # quantised once, cached (not timed)
    out = {}
    for name, enc in (("fp32", fp32), ("int8", int8)):
        out[f"{name}_forward_img_s"], out[f"{name}_forward_cpu_img_s"] = (round(v, 1) for v in
                                                                          pure_forward(enc, 512, batch_size))
    if folder is not None:
        e2e = end_to_end(folder, workers, batch_size, runtime="onnx-int8")
        out["int8_artenc_img_s"], out["int8_artenc_cpu_img_s"] = round(e2e["img_s"], 1), round(e2e["cpu_img_s"], 1)
    if WIKIART.is_dir() and n_eval:
        table = pd.read_csv(WIKIART / "labels.csv")
        dev = table[table["split"] == "dev"]
        dev = dev.groupby("style", sort=True).head(max(1, n_eval // dev["style"].nunique())).reset_index(drop=True)
        pixels = np.stack([decode_crop(WIKIART / p, fp32.preprocess).pixels for p in dev["path"]])
        vec = {name: np.concatenate([enc.encode(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])
               for name, enc in (("fp32", fp32), ("int8", int8))}
        cos = (vec["fp32"] * vec["int8"]).sum(axis=1)
        out.update(eval_rows=len(dev), cosine_min=round(float(cos.min()), 4), cosine_mean=round(float(cos.mean()), 4))
        for name, v in vec.items():
            report = evaluate_arrays(v, dev, ["style"], k=10, linear_probe=False, n_bootstrap=0, log_warnings=False)
            out[f"{name}_p_at_10"] = round(report.fields["style"].p_at_k, 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="WikiArt images to use")
    ap.add_argument("--n-large", type=int, default=150, help="generated 2000-px JPEGs")
    ap.add_argument("--n-eval", type=int, default=4200, help="WikiArt dev rows for the INT8 P@10 (0: skip)")
    ap.add_argument("--no-int8", action="store_true", help="skip the float32 vs INT8 comparison")
    ap.add_argument("--n-baseline", type=int, default=None, help="images for the img2vec baseline (default: all)")
    ap.add_argument("--before", type=Path, default=None,
                    help="an older artenc checkout: its end-to-end rate too, in the same run (uses DIR/src)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="forward and end-to-end measurements (of each tree with --before): best forward, mean end to end")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_e2e", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--runtime", default="auto", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._e2e:
        _e2e_child(args._e2e, args.workers, args.batch_size, args.runtime)
        return 0
    load_before, cpu_before, wall_before = os.getloadavg(), cpu_seconds(), time.perf_counter()
    encoder = create_encoder(runtime="auto")
    rows, wikiart_folder = [], None
    if WIKIART.is_dir():
        rows.append(bench("wikiart_224px", WIKIART / "images", args.n, encoder, args.workers, args.batch_size,
                          args.n_baseline, args.before, args.rounds))
        wikiart_folder = Path(rows[-1]["folder"])
    else:
        print(f"skipping WikiArt: {WIKIART} not found", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        make_large_jpegs(Path(tmp), args.n_large)
        rows.append(bench("generated_2000px", Path(tmp), args.n_large, encoder, args.workers, args.batch_size,
                          args.n_baseline, args.before, args.rounds))
    int8 = {} if args.no_int8 else bench_int8(encoder, wikiart_folder, args.n_eval, args.workers, args.batch_size)
    for r in rows:  # the folders of symlinks made by `bench`
        shutil.rmtree(r.pop("folder"), ignore_errors=True)
    doc = {"runtime": encoder.runtime, "device": encoder.device, "cores": os.cpu_count(),
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
           "bench_wall_s": round(time.perf_counter() - wall_before, 1), "bench_cpu_s": round(cpu_seconds() - cpu_before, 1),
           "results": rows, "int8": int8}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"runtime={encoder.runtime} device={encoder.device} workers={args.workers or 'default'} "
          f"cores={doc['cores']} load before {doc['load_before']} after {doc['load_after']} "
          f"(bench {doc['bench_wall_s']} s wall, {doc['bench_cpu_s']} s CPU)")
    print("| dataset | n | baseline img/s (per CPU s) | forward img/s (per CPU s) | artenc img/s (per CPU s) "
          "| vs baseline (CPU) | of forward (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['images']} | {r['baseline_img_s']} ({r['baseline_cpu_img_s']}) | "
              f"{r['forward_img_s']} ({r['forward_cpu_img_s']}) | {r['artenc_img_s']} ({r['artenc_cpu_img_s']}) | "
              f"{r['speedup_vs_baseline']}x ({r['cpu_speedup_vs_baseline']}x) | "
              f"{r['fraction_of_forward']} ({r['cpu_fraction_of_forward']}) |")
        if "before_artenc_img_s" in r:
            print(f"| {r['dataset']}, before ({args.before}) | {r['images']} | | | {r['before_artenc_img_s']} "
                  f"({r['before_artenc_cpu_img_s']}) | | {r['before_fraction_of_forward']} "
                  f"({r['before_cpu_fraction_of_forward']}) |")
    if int8:
        print("\n| runtime | forward img/s (per CPU s) | artenc img/s (per CPU s) | cosine to fp32 min / mean "
              "| WikiArt dev P@10 (style) |")
        print("|---|---|---|---|---|")
        for name in ("fp32", "int8"):
            e2e = (f"{int8.get(name + '_artenc_img_s')} ({int8.get(name + '_artenc_cpu_img_s')})"
                   if name == "int8" else f"{rows[0]['artenc_img_s']} ({rows[0]['artenc_cpu_img_s']})"
                   if wikiart_folder else "-")
            cos = "1 / 1" if name == "fp32" else f"{int8.get('cosine_min')} / {int8.get('cosine_mean')}"
            print(f"| onnx {name} | {int8[name + '_forward_img_s']} ({int8[name + '_forward_cpu_img_s']}) | {e2e} | "
                  f"{cos} | {int8.get(name + '_p_at_10')} (n={int8.get('eval_rows')}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
