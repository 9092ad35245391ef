"""HTML building blocks of the report: page, section, tiles, tables (no template engine)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

CSS = """
:root { --ink:#222; --muted:#6b6b6b; --line:#e4e0d8; --paper:#fbfaf7; --accent:#8a3b12; }
* { box-sizing: border-box; }
body { margin:0; background:var(--paper); color:var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header { padding: 28px 40px 18px; border-bottom:1px solid var(--line); background:#fff; }
header h1 { font: 600 28px/1.2 Georgia, "Times New Roman", serif; margin:0 0 6px; }
header p { margin:0; color:var(--muted); }
nav { position:sticky; top:0; z-index:5; background:#fffdf8ee; border-bottom:1px solid var(--line);
  padding:8px 40px; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; }
main { max-width:1280px; margin:0 auto; padding:8px 40px 60px; }
section { margin:34px 0; }
section h2 { font: 600 22px/1.3 Georgia, serif; margin:0 0 4px; border-bottom:2px solid var(--line);
  padding-bottom:4px; }
p.lede { color:var(--muted); margin:4px 0 14px; max-width:880px; }
p.note { background:#f3efe6; border-left:3px solid #c9b99a; padding:8px 12px; color:#5a5040; }
h3 { font-size:15px; margin:18px 0 6px; }
.stats { display:flex; flex-wrap:wrap; gap:12px; margin:10px 0 16px; }
.stat { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px 16px; min-width:130px; }
.stat b { display:block; font:600 22px Georgia, serif; }
.stat span { color:var(--muted); font-size:13px; }
table { border-collapse:collapse; background:#fff; margin:8px 0 14px; font-size:14px; }
th, td { border:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:#f4f1ea; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.row { display:flex; gap:8px; overflow-x:auto; padding:6px 0 10px; align-items:flex-start; }
.row.wrap { flex-wrap:wrap; overflow-x:visible; }
figure.tile { margin:0; width:124px; flex:0 0 auto; }
figure.tile img { width:124px; height:124px; object-fit:contain; background:#eee; border-radius:3px;
  border:2px solid transparent; display:block; }
figure.tile.query img { border-color:var(--accent); }
figure.tile.keep img { border-color:#2a7a2a; }
figure.tile figcaption { font-size:12px; line-height:1.3; color:#444; margin-top:3px; word-break:break-word; }
figure.tile figcaption .sim { font-weight:600; color:var(--ink); }
figure.tile figcaption .lab { display:inline-block; background:#efe9dc; border-radius:3px; padding:0 4px;
  margin:1px 2px 0 0; }
figure.tile figcaption .lab.match { background:#dcefdc; }
.group { background:#fff; border:1px solid var(--line); border-radius:6px; padding:8px 12px; margin:10px 0; }
.group h3 { margin:2px 0 2px; }
img.plot { max-width:100%; background:#fff; border:1px solid var(--line); border-radius:4px; }
.cols { display:flex; flex-wrap:wrap; gap:28px; align-items:flex-start; }
.plots { display:flex; flex-wrap:wrap; gap:14px; }
.plots img.plot { max-width:calc(50% - 8px); }
footer { color:var(--muted); font-size:13px; text-align:center; padding:20px; }
"""


# Characters that end or re-open markup inside a <script> element, as JSON escapes (the
# table of Django's `json_script`, django/utils/html.py): `</script>` ends the element and
# `<!--` followed by `<script` makes the parser ignore the next `</script>` ("script data
# double escaped state", HTML Standard 13.2.5.20), swallowing the rest of the page. U+2028
# and U+2029 end a line in JavaScript before ES2019.
_JSON_IN_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_for_html(value: object) -> str:
    """`value` as compact JSON that is safe anywhere inside an HTML `<script>` element.

    The one JSON-in-HTML escaper of artenc: every data block (`json_script`) and every
    value written into inline JavaScript goes through it. `<`, `>`, `&`, U+2028 and U+2029
    become `\\u003c`-style escapes, so any text (a file name `<!--<script>`, a label
    `</script>`) parses back to itself with `JSON.parse` / `json.loads` and can neither
    end the script nor hide the markup after it. Raises TypeError for values that JSON
    cannot hold and ValueError for NaN or infinity (which `JSON.parse` would refuse).
    """
    return json.dumps(value, separators=(",", ":"), allow_nan=False).translate(_JSON_IN_HTML)


def json_script(value: object, element_id: str | None = None) -> str:
    """A `<script type="application/json">` data block holding `value` (`json_for_html`);
    read it back with `JSON.parse(element.textContent)`."""
    id_attr = f' id="{escape(element_id)}"' if element_id else ""
    return f'<script type="application/json"{id_attr}>{json_for_html(value)}</script>'


@dataclass
class Tile:
    """One thumbnail with a caption: a title line, an optional score and label chips."""

    src: str  # a data URI
    title: str
    score: str | None = None
    labels: Sequence[tuple[str, bool]] = ()  # (text, matches the query)
    kind: str = ""  # "", "query" or "keep": a coloured border
    hover: str = ""


@dataclass
class Section:
    """A report section; `body` is HTML, `note` says why something is missing."""

    id: str
    title: str
    lede: str = ""
    body: str = ""
    note: str = ""
    meta: dict = field(default_factory=dict)  # numbers for the JSON summary


def _clip(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def tile(t: Tile) -> str:
    chips = "".join(f'<span class="lab{" match" if m else ""}" title="{escape(text)}">{escape(_clip(text))}</span>'
                    for text, m in t.labels)
    score = f'<span class="sim">{escape(t.score)}</span> ' if t.score else ""
    return (f'<figure class="tile {t.kind}" title="{escape(t.hover or t.title)}"><img decoding="async" '
            f'src="{t.src}" alt="{escape(t.title)}"><figcaption>{score}{escape(t.title)}<br>{chips}'
            "</figcaption></figure>")


def tile_row(tiles: Iterable[Tile], wrap: bool = False) -> str:
    return f'<div class="row{" wrap" if wrap else ""}">' + "".join(tile(t) for t in tiles) + "</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table; numbers are right-aligned (floats with 3 decimals)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f'<td class="num">{v:.3f}</td>'
        if isinstance(v, int):
            return f'<td class="num">{v:,}</td>'
        if v is None:
            return '<td class="num">–</td>'
        return f"<td>{escape(str(v))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    head = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def stats(pairs: Iterable[tuple[str, object]]) -> str:
    """Big numbers with small captions."""
    cells = "".join(f'<div class="stat"><b>{escape(str(v))}</b><span>{escape(k)}</span></div>' for k, v in pairs)
    return f'<div class="stats">{cells}</div>'


def plot_img(src: str, alt: str) -> str:
    return f'<img class="plot" src="{src}" alt="{escape(alt)}">'


def render_section(s: Section) -> str:
    lede = f'<p class="lede">{s.lede}</p>' if s.lede else ""
    note = f'<p class="note">{escape(s.note)}</p>' if s.note else ""
    return f'<section id="{s.id}"><h2>{escape(s.title)}</h2>{lede}{note}{s.body}</section>'


def page(title: str, subtitle: str, body: str, *, nav: Sequence[tuple[str, str]] = (), extra_css: str = "",
         footer: str = "") -> str:
    """A complete self-contained HTML document."""
    links = "".join(f'<a href="#{escape(i)}">{escape(t)}</a>' for i, t in nav)
    nav_html = f"<nav>{links}</nav>" if links else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}{extra_css}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>{nav_html}"
        f"<main>{body}</main><footer>{escape(footer)}</footer></body></html>\n"
    )
