"""`artenc compare STORE_A STORE_B ...`: encoders side by side on the same metrics, one table."""

from __future__ import annotations

import argparse


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def markdown_table(reports: list[dict], k: int) -> str:
    """One row per (store, field): P@k, mAP@k, R@k, kNN accuracy, linear probe."""
    head = f"| store | model | field | P@{k} | mAP@{k} | R@{k} | kNN acc | linear probe | queries |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        for field, m in r["fields"].items():
            lines.append(
                f"| {r['store']} | {r.get('model')} | {field} | {_fmt(m['p_at_k'])} | {_fmt(m['map_at_k'])} | "
                f"{_fmt(m['r_at_k'])} | {_fmt(m['knn_accuracy'])} | {_fmt(m['linear_probe_accuracy'])} | "
                f"{m['n_queries']} |"
            )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    from artenc.commands.evaluate import add_eval_arguments

    p = sub.add_parser("compare", help="compare encoders: evaluate several stores, one table",
                       description=__doc__)
    p.add_argument("stores", nargs="+", metavar="STORE")
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.cli import emit_json
    from artenc.commands.evaluate import evaluate_from_args

    reports = [evaluate_from_args(s, args) for s in args.stores]
    if args.json:
        emit_json({"k": args.k, "stores": reports})
    else:
        print(markdown_table(reports, args.k))
    return 0
