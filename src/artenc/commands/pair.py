"""`artenc pair STORE A B [--out FILE.png]`: cosine similarity of two works, side by side."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pair", help="cosine similarity of two works", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("a", metavar="A", help="image file or path in the store")
    p.add_argument("b", metavar="B", help="image file or path in the store")
    p.add_argument("--out", metavar="FILE.png", help="draw both works side by side")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    doc = Collection.open(args.store).pair(args.a, args.b).to_dict()
    if args.out:
        from artenc.viz.grids import draw_pair

        draw_pair(doc["a"], doc["b"], doc["similarity"], args.out)
    if args.json:
        emit_json(doc)
    else:
        print(f"{doc['similarity']:.4f}")
    return 0
