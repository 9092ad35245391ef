"""`artenc serve STORE [--host 127.0.0.1] [--port 8000]`: a web page and JSON API for a store.

Upload or drag a painting to see its nearest works and predicted labels; browse
k-medoids clusters; review near-duplicate groups. The API is under /api/ (OpenAPI
page at /docs). Binds to 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse

from artenc.defaults import (
    DUPLICATE_THRESHOLD,
    DUPLICATE_THRESHOLD_UNVERIFIED,
    MAX_K,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MIN_INLIERS,
    SERVE_CLUSTER_SAMPLE,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page and JSON API: similar works, clusters, duplicates",
                       description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default: %(default)s, this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host header to answer besides 127.0.0.1, localhost, ::1 and --host, e.g. the "
                        "machine's name when binding 0.0.0.0 (repeatable; '*.example.org' patterns; other "
                        "hosts get 400)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20,
                   help="larger uploads are refused with 413 (default: %(default)s)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="decompression-bomb guard for uploads, width x height, as `artenc embed` "
                        "(default: %(default)s)")
    p.add_argument("--max-k", type=int, default=MAX_K, help="most neighbours per query (default: %(default)s)")
    p.add_argument("--duplicate-threshold", type=float, default=None,
                   help=f"cosine similarity of near-duplicates on the page, as `artenc dedup --threshold` "
                        f"(default {DUPLICATE_THRESHOLD} verified, {DUPLICATE_THRESHOLD_UNVERIFIED} with --no-verify)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="near-duplicates by embedding similarity only, no SIFT/RANSAC verification")
    p.add_argument("--min-inliers", type=int, default=MIN_INLIERS,
                   help="RANSAC inliers for a verified near-duplicate (default: %(default)s)")
    p.add_argument("--clusters", default="auto", metavar="K",
                   help="k for the clusters on the page, or 'auto' (default: %(default)s)")
    p.add_argument("--cluster-sample", type=int, default=SERVE_CLUSTER_SAMPLE, metavar="N",
                   help="works clustered; the others join their nearest medoid (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="queries processed at once, each on one core (default: the number of cores)")
    p.add_argument("--thumbnail-dir", metavar="DIR", help="thumbnail cache (default: artenc's cache folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from artenc.errors import UsageError, require

    require("fastapi", "serve")
    uvicorn = require("uvicorn", "serve")
    require("multipart", "serve")
    from artenc.search import check_threshold
    from artenc.serve.app import create_app
    from artenc.serve.limits import LOOPBACK_HOSTS, SERVER_LIMITS
    from artenc.serve.state import MB, ServeSettings

    log = logging.getLogger("artenc")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    try:
        settings = ServeSettings(
            max_upload_bytes=int(args.max_upload_mb * MB), max_pixels=args.max_pixels, max_k=args.max_k,
            duplicate_threshold=(None if args.duplicate_threshold is None
                                 else check_threshold(args.duplicate_threshold, "duplicate_threshold")),
            verify_duplicates=args.verify, min_inliers=args.min_inliers,
            clusters=args.clusters, cluster_sample=args.cluster_sample, thumbnail_dir=args.thumbnail_dir,
            allowed_hosts=(args.host, *args.allowed_host),
            **({"workers": args.workers} if args.workers is not None else {}),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    app = create_app(args.store, settings)
    if args.host not in LOOPBACK_HOSTS:
        log.warning("binding to %s: anyone who can reach this machine on port %d can use the page",
                    args.host, args.port)
        if not args.allowed_host:
            log.warning("only the Host names %s are answered; add --allowed-host NAME for the name "
                        "others use to reach this machine", ", ".join([*LOOPBACK_HOSTS, args.host]))
    log.info("open http://%s:%d/ (API docs at /docs); Ctrl-C stops", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False, **SERVER_LIMITS)
    return 0
