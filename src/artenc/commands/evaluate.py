"""`artenc evaluate STORE --field style`: retrieval metrics of a store's vectors per label field."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from artenc.defaults import EVALUATION_K

if TYPE_CHECKING:
    from artenc.evaluate import EvaluationReport


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `evaluate` and `compare`."""
    p.add_argument("--field", nargs="+", metavar="FIELD",
                   help="label columns to evaluate (default: every label column but the split column)")
    p.add_argument("-k", "--k", type=int, default=EVALUATION_K,
                   help="neighbours for P@k, mAP@k, R@k and kNN (default: %(default)s)")
    p.add_argument("--query-split", metavar="NAME", help="queries: items whose split column equals NAME (default: all)")
    p.add_argument("--gallery-split", metavar="NAME",
                   help="gallery: items with this split (default: the query set, leave-one-out)")
    p.add_argument("--split-column", default="split", help="label column holding the split (default: %(default)s)")
    p.add_argument("--no-linear-probe", action="store_true", help="skip the (slower) linear probe")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def evaluation_from_args(store_path: str, args: argparse.Namespace) -> EvaluationReport:
    """`Collection.evaluate` of the store with the parsed flags (95 % bootstrap intervals included)."""
    from artenc.collection import Collection
    from artenc.errors import ParameterError

    if args.k < 1:
        raise ParameterError("k", f"must be >= 1, got {args.k}")
    return Collection.open(store_path).evaluate(
        args.field, k=args.k, query_split=args.query_split, gallery_split=args.gallery_split,
        split_column=args.split_column, linear_probe=not args.no_linear_probe,
    )


def evaluate_from_args(store_path: str, args: argparse.Namespace) -> dict:
    """The JSON document of `evaluation_from_args`."""
    return evaluation_from_args(store_path, args).to_dict()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="retrieval metrics (P@k, mAP@k, R@k, kNN, linear probe) of a store, with 95%% intervals",
                       description=__doc__)
    p.add_argument("store", metavar="STORE")
    add_eval_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.report.tables import evaluation_table

    report = evaluate_from_args(args.store, args)
    if args.json:
        emit_json(report)
    else:
        print(evaluation_table([report], args.k))
    return 0
