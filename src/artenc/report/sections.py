"""Report sections about the works themselves: summary, neighbourhoods, near-duplicates, evaluation.

Each `*_section` returns a `Section` (HTML body plus a few numbers for the JSON summary).
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

import numpy as np

from artenc.defaults import EVALUATION_K, REPORT_K, REPORT_SAMPLES, VERIFY_DUPLICATES
from artenc.report.html import Section, Tile, stats, table, tile_row
from artenc.report.inline import thumb_uri
from artenc.viz.umap_map import SPLIT_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from artenc.store import Store

THUMB = 160


def split_column(store: Store) -> str | None:
    """The label column that marks splits (`split`, `set`...), if any."""
    return next((c for c in store.label_columns if c.lower() in SPLIT_NAMES), None)


def label_fields(store: Store) -> list[str]:
    """Label columns that describe works (not the split marker)."""
    return [c for c in store.label_columns if c != split_column(store)]


def work_tile(items: pd.DataFrame, row: int, columns: list[str], *, score: str | None = None,
              reference: dict | None = None, kind: str = "", title: str | None = None) -> Tile:
    """A tile of one work: thumbnail, name, label chips (green where they equal `reference`)."""
    rec = items.iloc[int(row)]
    chips = []
    for col in columns:
        value = rec[col]
        if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "":
            continue
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


def neighbours_section(store: Store, *, samples: int = REPORT_SAMPLES, k: int = REPORT_K, field: str | None = None,
                       seed: int = 0) -> Section:
    """For a few sample works: the work, then its k nearest neighbours with their cosine similarity."""
    from artenc.index import build_index
    from artenc.neighbors import Query, nearest

    items, vectors = store.items, store.vectors
    queries = pick_queries(store, samples, field, seed)
    found = nearest(build_index(vectors, "flat"),
                    [Query(str(items["relpath"].iloc[q]), str(items["path"].iloc[q]), vectors[q], q) for q in queries], k)
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


def duplicates_section(store: Store, *, threshold: float | None = None, verify: bool = VERIFY_DUPLICATES,
                       max_groups: int = 24) -> Section:
    """Near-duplicate groups (artenc.dedup): the keeper, then its copies with their similarity."""
    from artenc.dedup import find_duplicates

    doc = find_duplicates(store, threshold, verify=verify)
    items, columns, split = store.items, store.label_columns, split_column(store)
    groups = doc["groups"]
    n_dups = sum(len(g["duplicates"]) for g in groups)
    how = (f"cosine ≥ {doc['threshold']} confirmed by SIFT/RANSAC (≥ {doc['min_inliers']} inliers)"
           if doc["verified"] else f"cosine ≥ {doc['threshold']} (embedding only)")
    body = stats([("groups", len(groups)), ("redundant copies", n_dups),
                  ("candidate pairs", doc["candidate_pairs"]), ("confirmed pairs", doc["duplicate_pairs"])])
    members = [store.index_of([g["keep"], *(d["path"] for d in g["duplicates"])]) for g in groups]
    spans = [split is not None and items[split].astype(str).iloc[rows].nunique() > 1 for rows in members]
    for gi, (g, rows) in enumerate(zip(groups[:max_groups], members, strict=False)):
        tiles = [work_tile(items, rows[0], columns, kind="keep", score="keep")]
        for d, r in zip(g["duplicates"], rows[1:], strict=True):
            score = f"{d['similarity']:.3f}" + (f" · {d['inliers']} inliers" if "inliers" in d else "")
            tiles.append(work_tile(items, r, columns, score=score))
        sides = ", ".join(map(escape, sorted(set(items[split].astype(str).iloc[rows])))) if spans[gi] else ""
        flag = f" — spans {escape(split)} {sides}" if sides else ""
        body += f'<div class="group"><h3>group {gi + 1}: {len(rows)} works{flag}</h3>{tile_row(tiles)}</div>'
    if len(groups) > max_groups:
        body += f"<p>… and {len(groups) - max_groups} more groups (run <code>artenc dedup</code> for all).</p>"
    leaks = int(sum(spans))
    lede = (f"Works that are the same picture (edited copies, crops, re-scans): {how}. The keeper (green frame) "
            "has the highest resolution. " + (f"{leaks} group(s) span several values of <b>{escape(split)}</b>: "
                                              "copies shared between splits leak test works into training."
                                              if split else ""))
    if not groups:
        body += "<p>No near-duplicates found.</p>"
    return Section("duplicates", "Near-duplicates", lede, body,
                   meta={"groups": len(groups), "duplicates": n_dups, "threshold": doc["threshold"],
                         "verified": doc["verified"], "cross_split_groups": leaks if split else None})


def evaluation_section(store: Store, *, k: int = EVALUATION_K) -> Section:
    """Retrieval metrics per label field (leave-one-out over all works), with chance levels."""
    fields = label_fields(store)
    if not fields:
        return Section("evaluation", "Evaluation", note="No label columns in this store, so there is nothing to "
                       "evaluate against (embed with --labels CSV to get this section).")
    from artenc.evaluate import evaluate_store

    report = evaluate_store(store, fields, k=k)
    items, rows = store.items, []
    for f, m in report["fields"].items():
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
    return Section("evaluation", "Evaluation", lede, table(headers, rows), meta={"fields": report["fields"]})
