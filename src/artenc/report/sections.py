"""Report sections about the works themselves: summary, neighbourhoods, near-duplicates, evaluation.

Each `*_section` returns a `Section` (HTML body plus a few numbers for the JSON summary).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np

from artenc import labels
from artenc.report.html import Section, Tile, stats, table, tile_row
from artenc.report.inline import thumb_uri

if TYPE_CHECKING:
    import pandas as pd

    from artenc.dedup import DuplicateReport
    from artenc.evaluate import EvaluationReport
    from artenc.neighbors import SimilarResult
    from artenc.store import Store

THUMB = 160


def split_column(store: Store) -> str | None:
    """The store's split column (`labels.SPLIT_COLUMN`), if it has one."""
    return labels.split_column(store.label_columns)


def label_fields(store: Store) -> list[str]:
    """Label columns that describe works: all but the split column (`labels.label_fields`)."""
    return labels.label_fields(store.label_columns)


def work_tile(items: pd.DataFrame, row: int, columns: list[str], *, score: str | None = None,
              reference: dict | None = None, kind: str = "", title: str | None = None) -> Tile:
    """A tile of one work: thumbnail, name, label chips (green where they equal `reference`)."""
    rec = items.iloc[int(row)]
    chips = []
    for col, missing in zip(columns, labels.is_missing([rec[c] for c in columns]), strict=True):
        if missing:
            continue
        value = rec[col]
        chips.append((str(value), reference is not None and reference.get(col) == value))
    name = str(rec["relpath"])
    return Tile(thumb_uri(str(rec["path"]), THUMB), title or name.rsplit("/", 1)[-1], score, chips, kind, hover=name)


def _value_counts_table(items: pd.DataFrame, column: str, top: int = 15) -> str:
    counts = items[column].astype("string").fillna("(none)").value_counts()
    rows = [(str(v), int(n), f"{100 * n / len(items):.1f}%") for v, n in counts.head(top).items()]
    if len(counts) > top:
        rows.append((f"… {len(counts) - top} more values", int(counts.iloc[top:].sum()), ""))
    return f"<h3>{escape(column)}</h3>" + table([column, "works", "share"], rows)


def summary_section(store: Store, *, samples: int = 12, seed: int = 0) -> Section:
    """What the store holds: counts, model, label distributions, skipped files, a random sample."""
    items, summary = store.items, store.summary()
    pixels = (items["width"] * items["height"]).to_numpy()
    mid = int(np.argsort(pixels)[len(pixels) // 2]) if len(pixels) else None
    numbers = [("works embedded", f"{summary['count']:,}"), ("files skipped", summary["skipped"]),
               ("vector size", summary["dim"]), ("label columns", len(summary["label_columns"]))]
    if mid is not None:
        numbers.append(("median image", f"{int(items['width'].iloc[mid])}×{int(items['height'].iloc[mid])}"))
    body = stats(numbers)
    prep = ", ".join(f"{k} {v}" for k, v in (summary["preprocess"] or {}).items())
    body += table(["", ""], [("model", summary["model"]), ("weights", summary["fingerprint"]),
                             ("preprocessing", prep), ("store", summary["store"])])
    body += '<div class="cols">' + "".join(f"<div>{_value_counts_table(items, c)}</div>"
                                           for c in store.label_columns) + "</div>"
    if summary["skipped"]:
        rows = [(s["path"], s["reason"]) for s in summary["skipped_files"][:30]]
        body += "<h3>Files that could not be embedded</h3>" + table(["file", "reason"], rows)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(items), size=min(samples, len(items)), replace=False))
    body += "<h3>A random sample of works</h3>" + tile_row(
        (work_tile(items, i, store.label_columns) for i in pick), wrap=True)
    return Section("summary", "The collection", "What was embedded, with which model, and how the labels "
                   "are distributed.", body, meta={"count": summary["count"], "skipped": summary["skipped"]})


def pick_queries(store: Store, n: int, field: str | None, seed: int = 0) -> list[int]:
    """`n` sample works: spread over the values of `field` when there is one, else random."""
    items = store.items
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    if field is None:
        return sorted(order[:n].tolist())
    values = items[field].astype("string").fillna("").to_numpy()[order]
    picks: list[int] = []
    while len(picks) < min(n, len(items)):
        seen: set[str] = set()
        for i, v in zip(order, values, strict=True):
            if len(picks) >= n:
                break
            if v not in seen and int(i) not in picks:
                seen.add(v)
                picks.append(int(i))
        if not seen:
            break
    return picks


def neighbours_section(store: Store, result: SimilarResult, *, k: int, field: str | None = None) -> Section:
    """Render sample works with their k nearest neighbours (`Collection.similar` of stored works,
    e.g. those of `pick_queries`) and their cosine similarity."""
    items = store.items
    queries = [r.row for r in result]
    found = [(r.rows, [n.similarity for n in r.neighbors]) for r in result]
    columns, body, agree = store.label_columns, "", []
    for q, (ids, sims) in zip(queries, found, strict=True):
        ref = items.iloc[q][columns].to_dict() if columns else None
        tiles = [work_tile(items, q, columns, kind="query", score="query")]
        tiles += [work_tile(items, r, columns, score=f"{s:.3f}", reference=ref) for r, s in zip(ids, sims, strict=True)]
        same = int((items[field].iloc[ids].to_numpy() == items[field].iloc[q]).sum()) if field else 0
        head = escape(str(items["relpath"].iloc[q]))
        if field is not None:
            agree.append(same / max(len(ids), 1))
            head += f" — {same} of {len(ids)} neighbours share its {escape(field)}"
        body += f'<div class="group"><h3>{head}</h3>{tile_row(tiles)}</div>'
    lede = (f"Each row starts with a sample work (red frame), followed by its {k} nearest neighbours in the "
            "embedding space, most similar first; the number is the cosine similarity (1 = identical vectors). "
            "Green label chips match the sample work's labels.")
    return Section("neighbours", "Neighbourhoods", lede, body,
                   meta={"queries": len(queries), "k": k,
                         "mean_label_agreement": round(float(np.mean(agree)), 4) if agree else None})


def duplicates_section(store: Store, report: DuplicateReport, *, max_groups: int = 24, max_pairs: int = 50) -> Section:
    """Render near-duplicate groups (`Collection.duplicates`): the keeper, then its copies."""
    items, columns, split = store.items, store.label_columns, split_column(store)
    groups = report.groups
    n_dups = sum(len(g.duplicates) for g in groups)
    how = (f"cosine ≥ {report.threshold} confirmed by SIFT/RANSAC (≥ {report.min_inliers} inliers)"
           if report.verified else f"cosine ≥ {report.threshold} (embedding only)")
    body = stats([("groups", len(groups)), ("redundant copies", n_dups),
                  ("candidate pairs", report.candidate_pairs), ("confirmed pairs", report.duplicate_pairs)])
    members = [[g.keep, *(d.row for d in g.duplicates)] for g in groups]
    spans = [split is not None and items[split].astype(str).iloc[rows].nunique() > 1 for rows in members]
    for gi, (g, rows) in enumerate(zip(groups[:max_groups], members, strict=False)):
        tiles = [work_tile(items, rows[0], columns, kind="keep", score="keep")]
        for d in g.duplicates:
            score = f"{d.similarity:.3f}" + (f" · {d.inliers} inliers" if d.inliers is not None else "")
            tiles.append(work_tile(items, d.row, columns, score=score))
        sides = ", ".join(map(escape, sorted(set(items[split].astype(str).iloc[rows])))) if spans[gi] else ""
        flag = f" — spans {escape(split)} {sides}" if sides else ""
        body += f'<div class="group"><h3>group {gi + 1}: {len(rows)} works{flag}</h3>{tile_row(tiles)}</div>'
    if len(groups) > max_groups:
        body += f"<p>… and {len(groups) - max_groups} more groups (run <code>artenc dedup</code> for all).</p>"
    in_groups = {frozenset((g.keep, d.row)) for g in groups for d in g.duplicates}
    others = [d for d in report.pair_list if frozenset((d.a, d.b)) not in in_groups]
    if others:  # a clique grouping cannot show every pair: the rest are listed
        rows = [(str(items["relpath"].iloc[d.a]), str(items["relpath"].iloc[d.b]), float(d.similarity), d.inliers)
                for d in others[:max_pairs]]
        body += (f"<h3>{len(others)} more duplicate pairs</h3><p>Pairs that are not a keeper and its copy in the "
                 "groups above (the groups hold only works that are all duplicates of each other).</p>"
                 + table(["work", "duplicate of", "similarity", "inliers"], rows))
        if len(others) > max_pairs:
            body += f"<p>… and {len(others) - max_pairs} more pairs (run <code>artenc dedup</code> for all).</p>"
    leaks = int(sum(spans))
    lede = (f"Works that are the same picture (edited copies, crops, re-scans): {how}. The keeper (green frame) "
            "has the highest resolution. " + (f"{leaks} group(s) span several values of <b>{escape(split)}</b>: "
                                              "copies shared between splits leak test works into training."
                                              if split else ""))
    if not groups and not others:
        body += "<p>No near-duplicates found.</p>"
    return Section("duplicates", "Near-duplicates", lede, body,
                   meta={"groups": len(groups), "duplicates": n_dups, "threshold": report.threshold,
                         "verified": report.verified, "cross_split_groups": leaks if split else None})


def fields_with_shared_values(store: Store, fields: list[str]) -> list[str]:
    """The label fields where some value labels at least 2 works (a work needs another work
    with its label to be retrieved); the others cannot be evaluated."""
    items = store.items
    out = []
    for f in fields:
        values = items[f][~labels.is_missing(items[f])].astype(str)
        if len(values) and values.value_counts().iloc[0] >= 2:
            out.append(f)
    return out


def evaluation_section(store: Store, report: EvaluationReport | None, *, left_out: list[str] | None = None) -> Section:
    """Render retrieval metrics per label field (`Collection.evaluate`, leave-one-out), with chance
    levels; None (no label fields) gives a note. `left_out`: label fields not evaluated because
    no value of theirs is shared by 2 works (named in a note)."""
    skipped = (f"Not evaluated: {', '.join(left_out)} (no value is shared by 2 works, so no work has another "
               "work with its label to find)." if left_out else "")
    if report is None:
        if skipped:
            return Section("evaluation", "Evaluation", note=skipped, meta={"left_out": left_out})
        return Section("evaluation", "Evaluation", note="No label columns in this store, so there is nothing to "
                       "evaluate against (embed with labels to get this section).")
    k, doc = report.k, report.to_dict()
    items, rows = store.items, []
    for f, m in doc["fields"].items():
        share = items[f].astype("string").value_counts(normalize=True)
        rows.append((f, m["n_queries"], int(len(share)), m["p_at_k"], m["map_at_k"], m["r_at_k"],
                     m["knn_accuracy"], m["linear_probe_accuracy"], float(share.iloc[0]) if len(share) else None))
    headers = ["label", "works", "values", f"P@{k}", f"mAP@{k}", f"R@{k}", f"{k}-NN accuracy",
               "linear probe", "largest class"]
    lede = (f"How well the embedding groups works that share a label, each work queried against all others. "
            f"P@{k}: share of the {k} nearest neighbours with the same label; mAP@{k}: the same, rewarding "
            f"correct neighbours ranked first; R@{k}: share of works with at least one same-label neighbour "
            f"among the {k}; {k}-NN accuracy: the neighbours' majority vote is right; linear probe: a logistic "
            "regression on the vectors (5-fold cross-validation). Compare with the largest class share: "
            "what always guessing the most common label would score.")
    meta = {"fields": doc["fields"], **({"left_out": left_out} if left_out else {})}
    return Section("evaluation", "Evaluation", lede, table(headers, rows), note=skipped, meta=meta)
