"""Plain-text tables of job results (Markdown), printed by `artenc evaluate` and `artenc compare`."""

from __future__ import annotations

from collections.abc import Sequence


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def evaluation_table(reports: Sequence[dict], k: int) -> str:
    """A Markdown table with one row per (store, label field) of `artenc.evaluate.evaluate_store` reports.

    Columns: store, model, field, P@k, mAP@k, R@k (fractions in [0, 1], 3 decimals), kNN
    accuracy and linear-probe accuracy ("-" when not computed) and the number of queries.
    """
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
