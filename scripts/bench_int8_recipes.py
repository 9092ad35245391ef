"""Compare INT8 quantisation recipes (`artenc.runtime.Int8Recipe`) against float32, in one run.

For each recipe: quantise the float32 ONNX export of tf_efficientnet_lite0 with
`artenc.runtime.quantize_onnx` (into a temporary folder, not the cache), then measure the
forward rate (images per wall-clock and per CPU second on pre-decoded batches, as
scripts/bench_embed.py does) and the cosine of its vectors to the float32 ones on WikiArt dev
crops (the rows scripts/bench_embed.py uses for its INT8 check; holdout rows are never read).
Prints one table row per recipe, the load average before and after.

    python scripts/bench_int8_recipes.py [--n-eval 2100] [--recipes default,dw,...] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from artenc.images import decode_crop
from artenc.runtime import (
    INT8_RECIPE,
    Encoder,
    Int8Recipe,
    _onnx_path,
    _onnx_sessions,
    create_encoder,
    quantize_onnx,
)

FIRST = Int8Recipe()  # the first recipe (version store.FIRST_INT8_RECIPE)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import WIKIART, Rate, pure_forward  # noqa: E402

C = ("Conv", "Clip")
RECIPES = {  # the first recipe, and variants of it (`Int8Recipe` fields)
    "v1": FIRST,
    "v1-dw": dataclasses.replace(FIRST, skip_depthwise=True),
    "v1-half": dataclasses.replace(FIRST, skip_share=0.5),
    "v1-entropy": dataclasses.replace(FIRST, calibrate="Entropy"),
    "v1-256": dataclasses.replace(FIRST, images=256),
    "clip": dataclasses.replace(FIRST, op_types=C),
    "clip-0": dataclasses.replace(FIRST, op_types=C, skip_share=0.0),
    "clip-256": dataclasses.replace(FIRST, op_types=C, images=256),
    "clip-scenes": dataclasses.replace(FIRST, op_types=C, calibration="scenes"),
    "clip-scenes-256": dataclasses.replace(FIRST, op_types=C, calibration="scenes", images=256),
    "clip-512": dataclasses.replace(FIRST, op_types=C, images=512),
    "clip-pwl": dataclasses.replace(FIRST, op_types=C, skip_matching=("conv_pwl",)),
    "clip-scenes-512": dataclasses.replace(FIRST, op_types=C, calibration="scenes", images=512),
    "clip-scenes-256-half": dataclasses.replace(FIRST, op_types=C, calibration="scenes", images=256, skip_share=0.5),
    "clip-scenes-256-pwl": dataclasses.replace(FIRST, op_types=C, calibration="scenes", images=256,
                                               skip_matching=("conv_pwl",)),
    "clip-scenes-256-third": dataclasses.replace(FIRST, op_types=C, calibration="scenes", images=256,
                                                 skip_share=1 / 3),
    "current": INT8_RECIPE,
}


def dev_pixels(preprocess, n_eval: int) -> np.ndarray:
    """The WikiArt dev crops scripts/bench_embed.py's INT8 check uses (the first n_eval / 7 per style)."""
    table = pd.read_csv(WIKIART / "labels.csv")
    dev = table[table["split"] == "dev"]
    dev = dev.groupby("style", sort=True).head(max(1, n_eval // dev["style"].nunique())).reset_index(drop=True)
    return np.stack([decode_crop(WIKIART / p, preprocess).pixels for p in dev["path"]])


def encode_all(enc: Encoder, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([enc.encode(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-eval", type=int, default=2100, help="WikiArt dev rows for the cosine")
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {list(RECIPES)}")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    fp32 = create_encoder(runtime="onnx")
    pixels = dev_pixels(fp32.preprocess, args.n_eval)
    ref = encode_all(fp32, pixels, args.batch_size)
    fwd, fwd_cpu = pure_forward(fp32, 512, args.batch_size)
    rows = [{"recipe": "fp32", "forward_img_s": round(fwd, 1), "forward_cpu_img_s": round(fwd_cpu, 1),
             "cosine_min": 1.0, "cosine_mean": 1.0, "cosine_p01": 1.0, "below_0.99": 0}]
    with tempfile.TemporaryDirectory(prefix="artenc-int8-recipes-") as tmp:
        for name in args.recipes.split(","):
            recipe = RECIPES[name]
            path = Path(tmp) / f"{name}.onnx"
            rate = Rate()
            quantize_onnx(_onnx_path(fp32.signature), path, fp32.preprocess.size, recipe)
            quant_s = time.perf_counter() - rate.wall
            sessions = _onnx_sessions(path, None)
            pool = ThreadPoolExecutor(len(sessions)) if len(sessions) > 1 else None
            enc = Encoder(fp32.backbone, fp32.signature, "onnx-int8", "cpu", None, sessions, pool)
            cos = (ref * encode_all(enc, pixels, args.batch_size)).sum(axis=1)
            worst = np.argsort(cos)[:5]
            print(name, "worst rows", worst.tolist(), np.round(cos[worst], 4).tolist(), file=sys.stderr)
            fwd, fwd_cpu = pure_forward(enc, 512, args.batch_size)
            rows.append({"recipe": name, "forward_img_s": round(fwd, 1), "forward_cpu_img_s": round(fwd_cpu, 1),
                         "cosine_min": round(float(cos.min()), 4), "cosine_mean": round(float(cos.mean()), 4),
                         "cosine_p01": round(float(np.quantile(cos, 0.01)), 4),
                         "below_0.99": int((cos < 0.99).sum()), "quantise_s": round(quant_s, 1),
                         "recipe_fields": dataclasses.asdict(recipe)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if pool is not None:
                pool.shutdown()
    doc = {"eval_rows": len(pixels), "load_before": [round(x, 2) for x in load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()], "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"WikiArt dev crops: {len(pixels)}; load before {doc['load_before']} after {doc['load_after']}")
    print("| recipe | forward img/s (per CPU s) | cosine to fp32 min / p01 / mean | images < 0.99 |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['forward_img_s']} ({r['forward_cpu_img_s']}) | {r['cosine_min']} / "
              f"{r['cosine_p01']} / {r['cosine_mean']} | {r['below_0.99']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
