"""Training-step speed of a partly trainable backbone: NCHW (baseline) vs NHWC (channels_last).

`PartlyTrainableBackbone` keeps the model and its inputs in channels_last; this measures a full
training step (forward, backward, AdamW step) of the fine-tuned stages plus a linear head, both
memory formats in the same run, interleaved over rounds (best round of each), and checks that
both give the same features. Cases: the whole network from uint8 images (`data.mode=full`,
`backbone.trainable=9` for lite0) and the last 2 stages from cached activations (cache mode).

    python scripts/bench_train.py [--batch 32] [--rounds 3] [--steps 3] [--size 224] [--threads 2]
    python scripts/bench_train.py --allocator compare [--batch 64] [--size 176] [--rounds 2]

`--allocator compare` instead times NHWC steps of the whole network under glibc's default
malloc settings and under `cpu_allocator=keep_freed` (`artenc.models.allocator`), each in its
own child process (the settings last for a process), alternating, with the page faults and the
user / system CPU seconds of the timed steps.

Needs the packaged lite0 weights (offline); no data (random images: speed does not depend on
the content).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _bench_common import load_note

from artenc.backbones import create_backbone
from artenc.layers.stages import PartlyTrainableBackbone
from artenc.runtime import EmbeddingModule


def _steps_per_second(module: PartlyTrainableBackbone, head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor,
                      steps: int) -> float:
    params = [*module.trainable_parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5)
    module.train(True)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(head(module(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def _allocator_child(args: argparse.Namespace) -> None:
    """One process: NHWC steps of the whole network under `args.allocator`; one JSON line."""
    from artenc.models.allocator import apply_allocator

    applied = apply_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = create_backbone("tf_efficientnet_lite0")
    module = PartlyTrainableBackbone(EmbeddingModule(base.model, base.preprocess), 9)
    head = torch.nn.Linear(base.dim, 7)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    y = torch.randint(0, 7, (args.batch,))
    _steps_per_second(module, head, x, y, 1)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    rate = _steps_per_second(module, head, x, y, args.steps) * args.batch
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"allocator": args.allocator, "applied": applied, "img_per_s": rate,
                      "minor_faults": after.ru_minflt - before.ru_minflt, "user_s": after.ru_utime - before.ru_utime,
                      "system_s": after.ru_stime - before.ru_stime}))


def _compare_allocators(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {"default": [], "keep_freed": []}
    for _ in range(args.rounds):
        for choice in runs:
            cmd = [sys.executable, __file__, "--allocator", choice, "--batch", str(args.batch), "--size",
                   str(args.size), "--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[choice].append(json.loads(out.strip().splitlines()[-1]))
    best = {c: max(r, key=lambda d: d["img_per_s"]) for c, r in runs.items()}
    for choice, d in best.items():
        print(f"{choice}: {d['img_per_s']:.1f} img/s (best of {args.rounds}), {d['minor_faults']} page faults, "
              f"user {d['user_s']:.1f} s, system {d['system_s']:.1f} s for {args.steps} steps")
    ratio = best["keep_freed"]["img_per_s"] / best["default"]["img_per_s"]
    print(f"keep_freed / default: {ratio:.2f} (batch {args.batch}, {args.size} px, whole lite0, NHWC) [{load_note()}]")
    print(json.dumps({"load": load_note(), "runs": runs, "ratio_keep_freed_over_default": round(ratio, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round (after one warm-up step)")
    ap.add_argument("--size", type=int, default=224, help="input side in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--allocator", choices=["compare", "default", "keep_freed"], default=None,
                    help="compare malloc settings (child processes) instead of memory formats")
    args = ap.parse_args()
    if args.allocator == "compare":
        return _compare_allocators(args)
    if args.allocator is not None:
        return _allocator_child(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = create_backbone("tf_efficientnet_lite0")
    n_stages = 9
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, 7, (args.batch,))
    results = {"load": load_note(), "batch": args.batch, "size": args.size, "threads": args.threads, "cases": {}}
    for trainable in (n_stages, 2):
        modules = {}
        for fmt in ("nchw", "nhwc"):
            embedding = EmbeddingModule(copy.deepcopy(base.model), base.preprocess)
            modules[fmt] = PartlyTrainableBackbone(embedding, trainable, channels_last=fmt == "nhwc")
        if trainable == n_stages:
            x = images
        else:  # cached activations: the packed input of the first trainable stage
            with torch.no_grad():
                staged = modules["nchw"].staged
                normed = images.float() * modules["nchw"].embedding.scale + modules["nchw"].embedding.shift
                x = staged.pack(*staged.frozen(normed))
        with torch.no_grad():
            for m in modules.values():
                m.train(False)
            diff = float((modules["nchw"](x) - modules["nhwc"](x)).abs().max())
        head = torch.nn.Linear(base.dim, 7)
        best = {fmt: 0.0 for fmt in modules}
        for m in modules.values():  # one warm-up step each (oneDNN primitive creation)
            _steps_per_second(m, copy.deepcopy(head), x, labels, 1)
        for _ in range(args.rounds):
            for fmt, m in modules.items():
                best[fmt] = max(best[fmt], _steps_per_second(m, copy.deepcopy(head), x, labels, args.steps))
        case = f"trainable={trainable} ({'uint8 images' if trainable == n_stages else 'cached activations'})"
        results["cases"][case] = {
            "nchw_img_per_s": round(best["nchw"] * args.batch, 1), "nhwc_img_per_s": round(best["nhwc"] * args.batch, 1),
            "ratio_nhwc_over_nchw": round(best["nhwc"] / best["nchw"], 2), "max_abs_feature_diff": diff,
        }
        print(f"{case}: NCHW {best['nchw'] * args.batch:.1f} img/s, NHWC {best['nhwc'] * args.batch:.1f} img/s, "
              f"ratio {best['nhwc'] / best['nchw']:.2f}, max |feature diff| {diff:.2e} [{load_note()}]", flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
