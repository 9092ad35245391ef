"""`artenc demo [--out DIR]`: generate a gallery, embed it, and show what artenc does with it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline offline on a generated gallery", description=__doc__)
    p.add_argument("--out", default="artenc-demo", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.demo import run_demo

    result = run_demo(args.out, workers=args.workers)
    if args.json:
        emit_json(result.to_dict())
        return 0
    print(f"gallery     {result.gallery} ({result.count} works embedded)")
    print(f"store       {result.store}   (try: artenc info {result.store})")
    for grid in result.grids:
        print(f"grid        {grid}")
    if result.duplicates:
        print(f"duplicates  {result.duplicates} ({result.duplicate_groups} groups)")
    if result.clusters:
        print(f"clusters    k={result.clusters.get('k')}  plots in {result.clusters.get('plots')}")
    if result.report:
        print(f"report      {result.report}   <- open this in a browser")
    return 0
