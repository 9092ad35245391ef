"""Training-step speed of a partly trainable backbone: NCHW (baseline) vs NHWC (channels_last).

`PartlyTrainableBackbone` keeps the model and its inputs in channels_last; this measures a full
training step (forward, backward, AdamW step) of the fine-tuned stages plus a linear head, both
memory formats in the same run, interleaved over rounds (best round of each), and checks that
both give the same features. Cases: the whole network from uint8 images (`data.mode=full`,
`backbone.trainable=9` for lite0) and the last 2 stages from cached activations (cache mode).

    python scripts/bench_train.py [--batch 32] [--rounds 3] [--steps 3] [--size 224] [--threads 2]

Needs the packaged lite0 weights (offline); no data (random images: speed does not depend on
the content).
"""

from __future__ import annotations

import argparse
import copy
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round (after one warm-up step)")
    ap.add_argument("--size", type=int, default=224, help="input side in pixels")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
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
