"""`write_report`: one self-contained HTML page about a store (every picture inlined)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from artenc import __version__
from artenc.atomic import atomic_write_text
from artenc.cluster import MIN_AUTO_WORKS
from artenc.collection import Collection
from artenc.defaults import EVALUATION_K, REPORT_K, REPORT_SAMPLES, VERIFY_DUPLICATES
from artenc.errors import OptionalDependencyError, ParameterError
from artenc.report import sections as s
from artenc.report import structure
from artenc.report.audit import audit_section
from artenc.report.html import Section, page, render_section
from artenc.report.interactive import MAP_CSS

if TYPE_CHECKING:
    from artenc.cluster import ClusterReport
    from artenc.dedup import DuplicateReport
    from artenc.store import Store

log = logging.getLogger("artenc")

SECTIONS = ("summary", "neighbours", "duplicates", "clusters", "map", "evaluation", "audit")
MIN_WORKS = {"neighbours": 2, "duplicates": 2, "clusters": MIN_AUTO_WORKS, "map": 2}  # fewer: a note


@dataclass
class ReportOptions:
    """What the report computes; the defaults suit collections up to tens of thousands of works."""

    title: str | None = None
    samples: int = REPORT_SAMPLES  # sample works shown with their neighbours
    k: int = REPORT_K  # neighbours per sample work
    color_by: str | None = None  # label field of the map (default: the first non-split label)
    dedup_threshold: float | None = None  # None: artenc.dedup's default
    verify: bool = VERIFY_DUPLICATES  # geometric verification of near-duplicates
    k_range: str | None = None  # k-medoids sweep (None: adapted to the collection size)
    map_method: str = "umap"
    sections: tuple[str, ...] = SECTIONS
    seed: int = 0


def _missing(section_id: str, title: str, exc: Exception) -> Section:
    """A section that could not be computed because a module or package is not available."""
    why = str(exc) if isinstance(exc, OptionalDependencyError) else f"needs {getattr(exc, 'name', None) or exc}"
    cause = exc.__cause__ or exc
    log.warning("report: %s left out: %s: %s", section_id, type(cause).__name__, cause)
    return Section(section_id, title, note=f"This section is not available here: {why}.")


def _too_small(section_id: str, title: str, n: int, needs: int) -> Section:
    """A section that needs more works than the store holds."""
    return Section(section_id, title, note=f"This section needs at least {needs} works; the store holds {n}.",
                   meta={"left_out": "too few works"})


def _as_collection(source: Collection | Store) -> Collection:
    return source if isinstance(source, Collection) else Collection(source)


def build_sections(source: Collection | Store, opts: ReportOptions, *, duplicates: DuplicateReport | None = None,
                   clusters: ClusterReport | None = None) -> list[Section]:
    """Compute the sections in order; a section whose code or package is missing becomes a note,
    and so does one that needs more works than the store holds (`MIN_WORKS`; clusters need
    3 distinct pictures, evaluation a label value shared by 2 works).

    Results already computed with the same options (the demo's `duplicates`, `clusters`) are
    rendered as given instead of being computed again. Raises ParameterError for an unknown
    section name.
    """
    unknown = set(opts.sections) - set(SECTIONS)
    if unknown:
        raise ParameterError("sections", f"has unknown name(s) {', '.join(sorted(unknown))}; "
                                         f"choose from {', '.join(SECTIONS)}")
    c = _as_collection(source)
    store = c.store
    fields = s.label_fields(store)
    field = opts.color_by or next(iter(fields), None)
    found: dict = {"clusters": clusters, "duplicates": duplicates}

    def duplicate_section() -> Section:
        if found["duplicates"] is None:
            found["duplicates"] = c.duplicates(opts.dedup_threshold, verify=opts.verify)
        return s.duplicates_section(store, found["duplicates"])

    def neighbours() -> Section:
        queries = [c.paths[q] for q in s.pick_queries(store, opts.samples, field, opts.seed)]
        return s.neighbours_section(store, c.similar(queries, opts.k), k=opts.k, field=field)

    def cluster_section() -> Section:
        if found["clusters"] is None:
            try:  # verified duplicates count as one picture, like identical files
                found["clusters"] = c.clusters("auto", k_range=opts.k_range or structure.report_k_range(len(c)),
                                               seed=opts.seed, duplicates=found["duplicates"])
            except ParameterError as exc:
                if exc.param != "k":  # the report always asks for k="auto": too few distinct pictures
                    raise
                return Section("clusters", "Clusters and representative works",
                               note=f"This section is left out: k={exc.problem}.",
                               meta={"left_out": "too few distinct pictures"})
        return structure.clusters_section(store, found["clusters"])

    def map_section() -> Section:
        labels = None if found["clusters"] is None else found["clusters"].clustering.labels
        return structure.map_section(store, field=opts.color_by, method=opts.map_method, cluster_labels=labels)

    builders = {
        "summary": ("The collection", lambda: s.summary_section(store, seed=opts.seed)),
        "neighbours": ("Neighbourhoods", neighbours),
        "duplicates": ("Near-duplicates", duplicate_section),
        "clusters": ("Clusters and representative works", cluster_section),
        "map": ("Map of the collection", map_section),
        "evaluation": ("Evaluation", lambda: s.evaluation_section(
            store, c.evaluate(shared, k=EVALUATION_K) if shared else None, left_out=sorted(set(fields) - set(shared)))),
        # duplicate links: the report's own near-duplicates when computed (verified by default)
        "audit": ("Audit", lambda: audit_section(store, c.audit(seed=opts.seed, duplicates=found["duplicates"]))),
    }
    shared = s.fields_with_shared_values(store, fields)
    out = []
    for sid in [x for x in SECTIONS if x in opts.sections]:
        title, build = builders[sid]
        start = time.monotonic()
        log.info("report: %s", title.lower())
        try:
            needs = MIN_WORKS.get(sid, 1)
            built = build() if len(c) >= needs else _too_small(sid, title, len(c), needs)
        except (ImportError, OptionalDependencyError) as exc:
            built = _missing(sid, title, exc)
        built.meta["seconds"] = round(time.monotonic() - start, 2)
        out.append(built)
    return out


def render(store: Store, sections: list[Section], title: str | None = None) -> str:
    """The HTML document of computed sections."""
    meta = store.meta
    subtitle = (f"{len(store):,} works · model {meta.get('model')} · store {store.root} · "
                f"made {time.strftime('%Y-%m-%d %H:%M')} by artenc {__version__}")
    body = "".join(render_section(s) for s in sections)
    nav = [(s.id, s.title) for s in sections]
    return page(title or f"Collection report: {'/'.join(Path(store.root).resolve().parts[-2:])}", subtitle, body, nav=nav,
                extra_css=MAP_CSS, footer="Self-contained report: every image is embedded in this file.")


def save_html(html: str, out_path: str | os.PathLike) -> Path:
    """Write the page atomically (a reader never sees half a report)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, html)


def write_report(source: Collection | Store, out_path: str | os.PathLike, options: ReportOptions | None = None, *,
                 duplicates: DuplicateReport | None = None, clusters: ClusterReport | None = None,
                 **kwargs) -> Path:
    """Write the report of a collection (or store) to `out_path` (one HTML file); returns its path.

    Options come as a `ReportOptions` or as its fields by keyword, e.g.
    `write_report(store, "report.html", samples=4, verify=False)`; `duplicates` and
    `clusters` are results already computed with the same options.
    """
    opts = options or ReportOptions(**kwargs)
    c = _as_collection(source)
    return save_html(render(c.store, build_sections(c, opts, duplicates=duplicates, clusters=clusters), opts.title),
                     out_path)
