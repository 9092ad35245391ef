"""`artenc compare STORE_A STORE_B ...`: encoders side by side on the same metrics, one table."""

from __future__ import annotations

import argparse

from artenc.commands.evaluate import add_eval_arguments, evaluate_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare encoders: evaluate several stores, one table",
                       description=__doc__)
    p.add_argument("stores", nargs="+", metavar="STORE")
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.report.tables import evaluation_table

    reports = [evaluate_from_args(s, args) for s in args.stores]
    if args.json:
        emit_json({"k": args.k, "stores": reports})
    else:
        print(evaluation_table(reports, args.k))
    return 0
