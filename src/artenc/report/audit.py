"""The report's audit section: label issues worst first (given and suggested label side by side,
with the nearest labelled works) and the most isolated works (`Collection.audit`)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from artenc.report.html import Section, stats, table, tile_row
from artenc.report.sections import work_tile

if TYPE_CHECKING:
    from artenc.audit import AuditReport
    from artenc.store import Store

ISSUE_ROWS = 12  # issues shown with thumbnails per field; the next ones as a table
NEIGHBOUR_TILES = 6  # neighbours shown beside each issue
OUTLIER_TILES = 24  # most isolated works shown


def _issue_rows(store: Store, report: AuditReport, field: str) -> str:
    items = store.items
    issues = report.issues(field)
    body = ""
    for issue in issues[:ISSUE_ROWS]:
        flag = " · flagged" if issue.is_issue else ""
        work = work_tile(items, issue.row, [], kind="query", score=f"quality {issue.quality:.3f}{flag}")
        work.labels = [(f"given: {issue.given}", False), (f"suggested: {issue.suggested}", True)]
        tiles = [work]
        for n in issue.neighbors[:NEIGHBOUR_TILES]:
            t = work_tile(items, n.row, [], score=f"{n.similarity:.3f}")
            t.labels = [(str(n.label), n.label == issue.suggested)] if n.label is not None else []
            tiles.append(t)
        head = (f"#{issue.rank} {escape(str(items['relpath'].iloc[issue.row]))} — labelled "
                f"<b>{escape(issue.given)}</b>, looks like <b>{escape(issue.suggested)}</b>")
        body += f'<div class="group"><h3>{head}</h3>{tile_row(tiles)}</div>'
    rest = issues[ISSUE_ROWS:]
    if rest:
        body += f"<h3>{len(rest)} more suspect {escape(field)} labels</h3>" + table(
            ["rank", "work", "given", "suggested", "label quality", "flagged"],
            [(i.rank, str(items["relpath"].iloc[i.row]), i.given, i.suggested, i.quality, "yes" if i.is_issue else "")
             for i in rest])
    return body


def audit_section(store: Store, report: AuditReport) -> Section:
    """Render `Collection.audit`: per label field its issues worst first, then the outliers."""
    doc = report.to_dict()
    items = store.items
    numbers = [(f"{f} issues", f"{d['issues']} of {d['checked']}") for f, d in doc["label_issues"].items()]
    numbers.append(("duplicate links", doc["duplicates"]["pairs"]))
    body = stats(numbers)
    for field, d in doc["label_issues"].items():
        acc = d["out_of_sample_accuracy"]
        body += f"<h3>Label issues: {escape(field)}</h3>"
        if acc is not None:
            body += (f"<p>{d['issues']} works flagged among {d['checked']}; the out-of-sample prediction agrees "
                     f"with the given label for {100 * acc:.1f}% of the works.</p>")
        body += _issue_rows(store, report, field) or "<p>No label issues found.</p>"
    outliers = report.outlier_list(OUTLIER_TILES, neighbors=0)
    body += f"<h3>The {len(outliers)} most isolated works</h3>"
    tiles = []
    for o in outliers:
        t = work_tile(items, o.row, list(report.fields), score=f"d={o.score:.3f} · z {o.z:.1f}")
        if o.duplicates:
            t.labels = [*t.labels, (f"duplicate of {len(o.duplicates)}", False)]
        tiles.append(t)
    body += tile_row(tiles, wrap=True)
    if report.notes:
        body += "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>"
    lede = ("What to check first. <b>Label issues</b>: each work's labels are predicted without it, by a "
            "linear probe trained on the other folds and by its nearest labelled neighbours; confident "
            "learning (cleanlab) flags the works whose given label the prediction does not support. Listed worst "
            "first (label quality = the predicted probability of the given label): flagged works and works for "
            "which another label is suggested. The red frame is the work, "
            "followed by its nearest labelled works; green chips agree with the suggested label. "
            f"<b>Outliers</b>: works far from their {report.k} nearest neighbours (d = mean cosine distance, "
            "z = robust z-score): odd images, wrong files, or rare works worth a look.")
    meta = {"issues": {f: d["issues"] for f, d in doc["label_issues"].items()},
            "outlier_median": doc["outliers"]["median_score"], "duplicate_pairs": doc["duplicates"]["pairs"],
            "notes": report.notes}
    return Section("audit", "Audit", lede, body, meta=meta)
