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
from artenc.defaults import REPORT_K, REPORT_SAMPLES, VERIFY_DUPLICATES
from artenc.errors import OptionalDependencyError
from artenc.report.html import Section, page, render_section
from artenc.report.interactive import MAP_CSS

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger("artenc")

SECTIONS = ("summary", "neighbours", "duplicates", "clusters", "map", "evaluation")


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


def build_sections(store: Store, opts: ReportOptions) -> list[Section]:
    """Compute the sections in order; a section whose code or package is missing becomes a note."""
    from artenc.report import sections as s
    from artenc.report import structure

    unknown = set(opts.sections) - set(SECTIONS)
    if unknown:
        from artenc.errors import UsageError

        raise UsageError(f"unknown report section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    field = opts.color_by or next(iter(s.label_fields(store)), None)
    clustering = None
    builders = {
        "summary": ("The collection", lambda: s.summary_section(store, seed=opts.seed)),
        "neighbours": ("Neighbourhoods", lambda: s.neighbours_section(
            store, samples=opts.samples, k=opts.k, field=field, seed=opts.seed)),
        "duplicates": ("Near-duplicates", lambda: s.duplicates_section(
            store, threshold=opts.dedup_threshold, verify=opts.verify)),
        "clusters": ("Clusters and representative works", lambda: structure.clusters_section(
            store, k_range=opts.k_range, seed=opts.seed)),
        "map": ("Map of the collection", lambda: structure.map_section(
            store, field=opts.color_by, method=opts.map_method,
            cluster_labels=None if clustering is None else clustering.labels)),
        "evaluation": ("Evaluation", lambda: s.evaluation_section(store)),
    }
    out = []
    for sid in [x for x in SECTIONS if x in opts.sections]:
        title, build = builders[sid]
        start = time.monotonic()
        log.info("report: %s", title.lower())
        try:
            built = build()
        except (ImportError, OptionalDependencyError) as exc:
            built = _missing(sid, title, exc)
        if isinstance(built, tuple):
            built, clustering = built
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


def write_report(store: Store, out_path: str | os.PathLike, options: ReportOptions | None = None,
                 **kwargs) -> Path:
    """Write the report of `store` to `out_path` (one HTML file) and return its path.

    Options come as a `ReportOptions` or as its fields by keyword, e.g.
    `write_report(store, "report.html", samples=4, verify=False)`.
    """
    opts = options or ReportOptions(**kwargs)
    return save_html(render(store, build_sections(store, opts), opts.title), out_path)
