"""Plain-text tables of job results (Markdown), printed by `artenc evaluate` and `artenc compare`."""

from __future__ import annotations

from collections.abc import Sequence

from artenc.evaluate import SIGNIFICANCE

SIGNIFICANT_MARK = "*"
"""Marks a value that differs significantly from the first store's (`artenc.evaluate.compare_reports`)."""


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _fmt_ci(m: dict, key: str, mark: str = "") -> str:
    """`0.474 [0.45, 0.50]` when the report has `<key>_ci`, else `0.474`; `mark` follows the value."""
    ci = m.get(f"{key}_ci")
    value = _fmt(m.get(key)) + (mark if m.get(key) is not None else "")
    return value if not ci else f"{value} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _significant(comparisons: Sequence[dict], store: str | None, field: str) -> set[str]:
    """Metrics of (store, field) that differ significantly from the first store's."""
    return {metric for c in comparisons if c["store"] == store and c["field"] == field
            for metric, d in c["metrics"].items() if d["significant"]}


def evaluation_table(reports: Sequence[dict], k: int, comparisons: Sequence[dict] = ()) -> str:
    """A Markdown table with one row per (store, label field) of `artenc.evaluate.evaluate_store` reports.

    Columns: store, model, field, P@k, mAP@k, R@k (fractions in [0, 1], 3 decimals), kNN
    accuracy and linear-probe accuracy ("-" when not computed) and the number of queries.
    P@k, mAP@k and kNN accuracy are followed by their 95 % bootstrap interval when the report
    has one (`0.474 [0.45, 0.50]`). `comparisons` (`FieldComparison.to_dict()` of
    `compare_reports`) mark with `*` the values that differ significantly from the first
    store's, explained in a line under the table. A "classifier" column (the accuracy of the
    encoder's own classifier, `loss=ce`) follows the linear probe when a report has one.
    """
    with_classifier = any("classifier_accuracy" in m for r in reports for m in r["fields"].values())
    extra = " classifier |" if with_classifier else ""
    head = f"| store | model | field | P@{k} | mAP@{k} | R@{k} | kNN acc | linear probe |{extra} queries |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    marked = False
    for i, r in enumerate(reports):
        for field, m in r["fields"].items():
            significant = _significant(comparisons, r.get("store"), field) if i else set()
            marked |= bool(significant)

            def cell(key: str, m=m, significant=significant) -> str:
                return _fmt_ci(m, key, SIGNIFICANT_MARK if key in significant else "")

            lines.append(
                f"| {r['store']} | {r.get('model')} | {field} | {cell('p_at_k')} | {cell('map_at_k')} | "
                f"{_fmt(m['r_at_k'])} | {cell('knn_accuracy')} | {_fmt(m['linear_probe_accuracy'])} | "
                + (f"{_fmt(m.get('classifier_accuracy'))} | " if with_classifier else "")
                + f"{m['n_queries']} |"
            )
    if marked:
        lines += ["", f"{SIGNIFICANT_MARK} differs from the first store (paired bootstrap over the shared queries, "
                      f"p < {SIGNIFICANCE}); [low, high]: 95 % bootstrap interval over the queries."]
    return "\n".join(lines)
