"""`artenc embed IMAGES_DIR... --out STORE`: embed images into a store (resumable)."""

from __future__ import annotations

import argparse

from artenc.defaults import MAX_ASPECT_RATIO, MAX_PIXELS, RUNTIMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed images into a store (incremental, resumable)",
                       description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGES_DIR", help="image folders or files (recursive)")
    p.add_argument("--out", required=True, metavar="STORE", help="store folder (created or extended)")
    p.add_argument("--model", default="tf_efficientnet_lite0",
                   help="backbone name, or path of an encoder.pt from `artenc train` (default: %(default)s)")
    p.add_argument("--weights", metavar="PATH", help="local state_dict for the architecture")
    p.add_argument("--labels", metavar="CSV", help="CSV with a 'path' column; other columns become labels")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(4, cores))")
    p.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,cuda:K}",
                   help="cuda:K: GPU K of the node (one process per GPU; default: %(default)s)")
    p.add_argument("--runtime", default="auto", choices=list(RUNTIMES),
                   help="auto: torch on GPU, ONNX Runtime on CPU; onnx-int8: INT8-quantised ONNX Runtime on CPU "
                        "(quantised once and cached; recorded with the store, which then takes no float32 vectors)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="decompression-bomb guard: refuse images with more pixels (default: %(default)s)")
    p.add_argument("--max-aspect-ratio", type=float, default=MAX_ASPECT_RATIO, metavar="R",
                   help="skip images whose long side exceeds R times the short side (too thin for a "
                        "centre crop; default: %(default)s)")
    p.add_argument("--trim-borders", action="store_true", default=None,
                   help="crop dark letterbox bars before resizing (recorded with the store)")
    p.add_argument("--flush-every", type=int, default=1024, metavar="N",
                   help="commit results to the store at the end of the batch that brings the uncommitted images "
                        "to N or more (segments are whole batches: below --batch-size, one per batch; a killed "
                        "run loses at most N - 1 + --batch-size images; default: %(default)s)")
    p.add_argument("--shard", metavar="I/N",
                   help="embed only job I's share of N (0 <= I < N; by a hash of each file's relative "
                        "path), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT, or 'auto' in a SLURM "
                        "array job; N jobs may write one store at once; then `artenc store merge STORE`")
    p.add_argument("--dtype", choices=["float32", "float16"], default=None,
                   help="how a new store keeps its vectors (float16: half the bytes, arithmetic in float32; "
                        "default: float32, or the store's own)")
    p.add_argument("--no-quality", dest="quality", action="store_false",
                   help="do not measure the quality scores while decoding (about 1 ms of CPU per image "
                        "saved; `Collection.quality` then has only size scores for these works)")
    p.add_argument("--json", action="store_true", help="print the run report as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.embedding import embed_folders

    report = embed_folders(
        args.images, args.out, model=args.model, weights=args.weights, labels=args.labels,
        batch_size=args.batch_size, workers=args.workers, device=args.device, runtime=args.runtime,
        max_pixels=args.max_pixels, max_aspect_ratio=args.max_aspect_ratio, flush_every=args.flush_every,
        trim_borders=args.trim_borders,
        shard=args.shard,
        dtype=args.dtype,
        quality=args.quality,
    )
    if args.json:
        emit_json(report.to_dict())
    if report.total == 0 and (args.shard is None or report.discovered > 0):  # a shard's share may be empty
        import logging

        logging.getLogger("artenc").error("error: no image could be read; nothing was embedded")
        return 2
    return 0
