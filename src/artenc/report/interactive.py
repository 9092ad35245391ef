"""An interactive map as an HTML fragment: SVG points, hover thumbnails, legend toggles, zoom;
`write_map_html` puts one on its own page (the HTML map of `artenc umap`).

Everything is inline (data as JSON in the page, thumbnails as data URIs, a few lines of
plain JavaScript), so the fragment works in a file opened from disk with no network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artenc.report.html import json_for_html, json_script, page
from artenc.report.inline import thumb_uri
from artenc.viz.umap_map import Coloring, point_text, spread_sample

if TYPE_CHECKING:
    from artenc.store import Store

WIDTH, HEIGHT, PAD = 1000, 720, 24
_ids = count(1)

MAP_CSS = """
.amap { background:#fff; border:1px solid #e4e0d8; border-radius:6px; padding:8px; }
.amap-legend { display:flex; flex-wrap:wrap; gap:6px; margin:0 0 6px; font-size:13px; }
.amap-legend button { border:1px solid #ddd; background:#fff; border-radius:12px; padding:1px 9px;
  cursor:pointer; font:inherit; }
.amap-legend button i { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:5px; }
.amap-legend button.off { opacity:.35; }
.amap-pics { margin-left:auto; color:#555; }
.amap-wrap { position:relative; }
.amap svg { width:100%; height:auto; display:block; cursor:grab; background:#fcfcfa; }
.amap svg circle { stroke:#fff; stroke-width:.4; }
.amap svg circle.hot { stroke:#000; stroke-width:1.5; }
.amap-tip { position:absolute; display:none; pointer-events:none; background:#fff; border:1px solid #ccc;
  border-radius:4px; padding:6px; box-shadow:0 2px 8px #0003; font-size:12px; max-width:220px; z-index:3; }
.amap-tip img { display:block; max-width:200px; max-height:200px; margin-bottom:4px; }
.amap-tip b { word-break:break-all; }
.amap-help { color:#777; font-size:12px; margin:4px 0 0; }
"""

_JS = r"""
(function(){
const root=document.getElementById(%(id)s);
const D=JSON.parse(root.querySelector('script[type="application/json"]').textContent);
const svg=root.querySelector('svg'), tip=root.querySelector('.amap-tip'), NS='http://www.w3.org/2000/svg';
const W=%(w)d, H=%(h)d, dots=[], off=new Set();
let vb=[0,0,W,H], hot=-1, drag=null;
const pics=document.createElementNS(NS,'g'); svg.appendChild(pics);
D.s.forEach(i=>{const im=document.createElementNS(NS,'image'), z=D.z;
  im.setAttribute('href',D.thumbs[D.t[i]]); im.setAttribute('x',D.x[i]-z/2); im.setAttribute('y',D.y[i]-z/2);
  im.setAttribute('width',z); im.setAttribute('height',z); im.dataset.k=D.k[i]; pics.appendChild(im);});
const box=root.querySelector('.amap-pics input'); if(box)box.addEventListener('change',()=>{pics.style.display=box.checked?'':'none';});
for(let i=0;i<D.x.length;i++){const c=document.createElementNS(NS,'circle');
  c.setAttribute('cx',D.x[i]);c.setAttribute('cy',D.y[i]);c.setAttribute('fill',D.colors[D.k[i]]);
  svg.appendChild(c);dots.push(c);}
function radius(){const r=D.r*vb[2]/W;dots.forEach(c=>c.setAttribute('r',r));}
function setVB(){svg.setAttribute('viewBox',vb.join(' '));radius();}
function pt(e){const b=svg.getBoundingClientRect();
  return {x:vb[0]+(e.clientX-b.left)/b.width*vb[2], y:vb[1]+(e.clientY-b.top)/b.height*vb[3], s:vb[2]/b.width};}
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function nearest(p){let best=-1,bd=Math.pow(14*p.s,2);
  for(let i=0;i<D.x.length;i++){if(off.has(D.k[i]))continue;
    const d=Math.pow(D.x[i]-p.x,2)+Math.pow(D.y[i]-p.y,2); if(d<bd){bd=d;best=i;}} return best;}
function show(i,e){if(hot>=0)dots[hot].classList.remove('hot'); hot=i;
  if(i<0){tip.style.display='none';return;} dots[i].classList.add('hot');
  tip.innerHTML=(D.t[i]>=0?'<img src="'+D.thumbs[D.t[i]]+'">':'')+'<b>'+esc(D.n[i])+'</b>'+(D.l[i]?'<br>'+esc(D.l[i]):'');
  const b=root.querySelector('.amap-wrap').getBoundingClientRect();
  let x=e.clientX-b.left+14, y=e.clientY-b.top+14;
  if(x+230>b.width)x=e.clientX-b.left-234; if(y+250>b.height)y=Math.max(0,e.clientY-b.top-250);
  tip.style.left=x+'px'; tip.style.top=y+'px'; tip.style.display='block';}
svg.addEventListener('mousemove',e=>{if(drag){const b=svg.getBoundingClientRect(), s=vb[2]/b.width;
    vb[0]=drag.vx-(e.clientX-drag.x)*s; vb[1]=drag.vy-(e.clientY-drag.y)*s; setVB(); return;}
  show(nearest(pt(e)),e);});
svg.addEventListener('mouseleave',()=>{drag=null;show(-1);});
svg.addEventListener('mousedown',e=>{drag={x:e.clientX,y:e.clientY,vx:vb[0],vy:vb[1]};e.preventDefault();});
window.addEventListener('mouseup',()=>{drag=null;});
svg.addEventListener('wheel',e=>{e.preventDefault();const p=pt(e), s=e.deltaY>0?1.25:0.8;
  vb=[p.x-(p.x-vb[0])*s,p.y-(p.y-vb[1])*s,vb[2]*s,vb[3]*s]; setVB();},{passive:false});
svg.addEventListener('dblclick',()=>{vb=[0,0,W,H];setVB();});
root.querySelectorAll('.amap-legend button').forEach(btn=>btn.addEventListener('click',()=>{
  const k=+btn.dataset.k; btn.classList.toggle('off'); if(off.has(k))off.delete(k); else off.add(k);
  dots.forEach((c,i)=>{c.style.display=off.has(D.k[i])?'none':'';});
  pics.querySelectorAll('image').forEach(im=>{im.style.display=off.has(+im.dataset.k)?'none':'';});}));
setVB();
})();
"""


def _scale(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates into the SVG box keeping the aspect ratio (y up)."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    s = min((WIDTH - 2 * PAD) / span[0], (HEIGHT - 2 * PAD) / span[1])
    off = (np.array([WIDTH, HEIGHT]) - span * s) / 2
    x = (coords[:, 0] - lo[0]) * s + off[0]
    y = HEIGHT - ((coords[:, 1] - lo[1]) * s + off[1])
    return np.round(x, 1), np.round(y, 1)


def map_fragment(
    coords: np.ndarray, colors: Coloring, names: Sequence[str], details: Sequence[str], *,
    paths: Sequence[str] | None = None, max_thumbnails: int = 5000, thumb_size: int | None = None,
    on_map: int = 70,
) -> str:
    """HTML of one interactive map.

    Hover shows a work's thumbnail (for up to `max_thumbnails` works), name and details; with
    `paths`, about `on_map` thumbnails spread over the map are drawn under the points. Hover
    thumbnails are 112 px, 80 px above 1,500 works (about 3 KB each inside the page).
    """
    n = len(coords)
    thumb_size = thumb_size or (112 if n <= 1500 else 80)
    x, y = _scale(np.asarray(coords, dtype=np.float64))
    categories, field = colors.categories, colors.field
    cat_index = {c: i for i, c in enumerate(categories)}
    with_thumb = np.zeros(n, dtype=bool)
    shown = spread_sample(np.column_stack([x, y]), on_map) if paths is not None else np.zeros(0, dtype=np.int64)
    if paths is not None:
        chosen = np.arange(n) if n <= max_thumbnails else np.random.default_rng(0).choice(n, max_thumbnails, replace=False)
        with_thumb[chosen] = True
        with_thumb[shown] = True
    t = np.cumsum(with_thumb) - 1
    data = {
        "x": x.tolist(), "y": y.tolist(), "k": [cat_index[k] for k in colors.keys],
        "n": list(names), "l": list(details), "t": np.where(with_thumb, t, -1).tolist(),
        "thumbs": [thumb_uri(str(paths[i]), thumb_size) for i in np.flatnonzero(with_thumb)] if paths else [],
        "colors": [colors.colors[c] for c in categories], "r": float(np.clip(40 / np.sqrt(max(n, 1)), 2.2, 5)),
        "s": shown.tolist(), "z": 60 if n < 500 else 44,
    }
    uid = f"amap{next(_ids)}"
    counts = {c: 0 for c in categories}
    for k in colors.keys:
        counts[k] += 1
    legend = "".join(
        f'<button type="button" data-k="{i}"><i style="background:{colors.colors[c]}"></i>{escape(c)} ({counts[c]})</button>'
        for i, c in enumerate(categories)
    ) if field else ""
    title = f"<b>{escape(field)}</b>" if field else ""
    pics = ('<label class="amap-pics"><input type="checkbox" checked> thumbnails on the map</label>'
            if len(shown) else "")
    script = _JS % {"id": json_for_html(uid), "w": WIDTH, "h": HEIGHT}
    return (
        f'<div class="amap" id="{uid}"><div class="amap-legend">{title}{legend}{pics}</div>'
        f'<div class="amap-wrap"><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="map of {n} works">'
        f'</svg><div class="amap-tip"></div></div>'
        '<p class="amap-help">Hover a point to see the work; scroll to zoom, drag to pan, double-click to reset; '
        'click a legend entry to hide or show it.</p>'
        f'{json_script(data)}<script>{script}</script></div>'
    )


def write_map_html(
    store: Store, coords: np.ndarray, colors: Coloring, out: str | os.PathLike, *, thumbnails: bool = True,
    title: str | None = None,
) -> Path:
    """A self-contained interactive HTML map of `store` (hover shows the work's thumbnail and labels).

    `coords` (n, 2) float and `colors` come from `artenc.viz.umap_map.store_map`; returns the
    path of the page written to `out` (its folder is created).
    """
    items = store.items
    names, details = point_text(items, store.label_columns)
    body = map_fragment(coords, colors, names, details, paths=items["path"].tolist() if thumbnails else None)
    subtitle = f"{len(items)} works from {store.root} · model {store.meta.get('model')}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(title or "Map of the collection", subtitle, body, extra_css=MAP_CSS), encoding="utf-8")
    return out
