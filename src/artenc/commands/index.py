"""`artenc index STORE [--kind auto|flat|hnsw|ivfpq|lsh]`: build a FAISS index and save it in the store."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from artenc.defaults import AUTO_EXACT_MAX, AUTO_HNSW_MAX
    from artenc.defaults import INDEX_KINDS as KINDS

    p = sub.add_parser("index", help="build and save a search index in a store", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--kind", default="auto", choices=KINDS,
                   help=f"auto: exact (flat) up to {AUTO_EXACT_MAX} vectors, HNSW up to {AUTO_HNSW_MAX}, IVF-PQ "
                        "above; a saved IVF-PQ index takes the store's new works without a rebuild "
                        "(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print what was built as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from artenc.commands._output import emit_json
    from artenc.errors import UsageError
    from artenc.index import refresh_index, save_index
    from artenc.store import Store

    store = Store.open(args.store)
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    t0 = time.monotonic()
    vindex = refresh_index(store, args.kind)
    path = save_index(store, vindex)
    doc = {"store": str(store.root), "kind": vindex.kind, "params": vindex.params, "count": vindex.ntotal,
           "revision": store.revision, "path": str(path), "seconds": round(time.monotonic() - t0, 3)}
    if args.json:
        emit_json(doc)
    else:
        logging.getLogger("artenc").info("%s index of %d vectors saved to %s", vindex.kind, vindex.ntotal, path)
    return 0
