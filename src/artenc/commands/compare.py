"""`artenc compare STORE_A STORE_B ...`: encoders side by side on the same metrics, one table.

Each metric comes with its 95 % bootstrap interval; the stores after the first are tested
against it by a paired bootstrap over the queries both stores hold (matched by path), and
the table marks significant differences with `*` (`artenc.evaluate.compare_reports`).
"""

from __future__ import annotations

import argparse

from artenc.commands.evaluate import add_eval_arguments, evaluation_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare encoders: evaluate several stores, one table, significant "
                                       "differences marked", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", nargs="+", metavar="STORE")
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.evaluate import compare_reports
    from artenc.report.tables import evaluation_table

    evaluations = [evaluation_from_args(s, args) for s in args.stores]
    reports = [e.to_dict() for e in evaluations]
    comparisons = [c.to_dict() for c in compare_reports(evaluations)]
    if args.json:
        emit_json({"k": args.k, "stores": reports, "comparisons": comparisons})
    else:
        print(evaluation_table(reports, args.k, comparisons))
    return 0
