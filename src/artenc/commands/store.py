"""`artenc store merge STORE`: join the parts that sharded embed runs (`--shard I/N`) wrote."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="store maintenance: merge the parts of a sharded embed run",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    m = actions.add_parser("merge", help="check every shard finished, then compact the store into one segment",
                           description="Check that every shard of the last sharded embed run finished and that no "
                                       "writer is still running, compact the store into one segment and record the "
                                       "shards' summed outcomes as its last embed run (`artenc info`).")
    m.add_argument("store", metavar="STORE")
    m.add_argument("--allow-incomplete", action="store_true",
                   help="merge the parts present even when some shards have not finished")
    m.add_argument("--json", action="store_true", help="print what was merged as JSON")
    m.set_defaults(func=run_merge)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_merge(args: argparse.Namespace) -> int:
    import logging

    from artenc.commands._output import emit_json
    from artenc.store import Store

    report = Store.open(args.store).merge(allow_incomplete=args.allow_incomplete)
    if args.json:
        emit_json(report.to_dict())
    else:
        shards = f"{report.shards} shards" if report.shards else "no shard records"
        logging.getLogger("artenc").info(
            "%s: %s%s; %d segments -> %d; %d vectors", report.store, shards,
            "" if report.complete else " (incomplete)", report.segments_before, report.segments, report.count)
    return 0
