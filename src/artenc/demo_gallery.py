"""A small generated gallery for `artenc demo`: five synthetic 'styles' plus edited copies.

No downloads: every image is drawn here, deterministically from a seed. Each style has
its own visual grammar (so neighbours and clusters are meaningful), and a few works get
edited copies (crop, small rotation, brightness, JPEG re-save) as planted near-duplicates.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

SIZE = (320, 256)
Painter = Callable[[np.random.Generator], Image.Image]


def _palette(rng: np.random.Generator, n: int, lo: int = 0, hi: int = 256) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in rng.integers(lo, hi, 3)) for _ in range(n)]


def pointillism(rng: np.random.Generator) -> Image.Image:
    """Thousands of small dots over a pale ground."""
    img = Image.new("RGB", SIZE, _palette(rng, 1, 200, 250)[0])
    draw = ImageDraw.Draw(img)
    colours = _palette(rng, 5, 40, 230)
    for _ in range(2500):
        x, y, r = rng.integers(0, SIZE[0]), rng.integers(0, SIZE[1]), rng.integers(2, 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colours[rng.integers(0, 5)])
    return img


def colour_field(rng: np.random.Generator) -> Image.Image:
    """Two or three soft-edged horizontal colour bands (after Rothko)."""
    img = Image.new("RGB", SIZE, _palette(rng, 1, 60, 160)[0])
    draw = ImageDraw.Draw(img)
    bands = int(rng.integers(2, 4))
    h = SIZE[1] // bands
    for i, colour in enumerate(_palette(rng, bands, 30, 240)):
        draw.rectangle((20, i * h + 12, SIZE[0] - 20, (i + 1) * h - 12), fill=colour)
    return img.filter(ImageFilter.GaussianBlur(6))


def geometric(rng: np.random.Generator) -> Image.Image:
    """A black grid with primary-coloured rectangles (after Mondrian)."""
    img = Image.new("RGB", SIZE, (245, 242, 230))
    draw = ImageDraw.Draw(img)
    xs = sorted(rng.integers(20, SIZE[0] - 20, 3).tolist())
    ys = sorted(rng.integers(20, SIZE[1] - 20, 2).tolist())
    primaries = [(200, 30, 30), (30, 60, 170), (240, 200, 30)]
    cells = [(x0, y0, x1, y1) for x0, x1 in zip([0, *xs], [*xs, SIZE[0]], strict=True)
             for y0, y1 in zip([0, *ys], [*ys, SIZE[1]], strict=True)]
    for idx in rng.choice(len(cells), 3, replace=False):
        draw.rectangle(cells[idx], fill=primaries[int(rng.integers(0, 3))])
    for x in xs:
        draw.rectangle((x - 4, 0, x + 4, SIZE[1]), fill=(15, 15, 15))
    for y in ys:
        draw.rectangle((0, y - 4, SIZE[0], y + 4), fill=(15, 15, 15))
    return img


def op_art(rng: np.random.Generator) -> Image.Image:
    """Black-and-white interference patterns."""
    yy, xx = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(np.float32)
    cx, cy = rng.uniform(0, SIZE[0]), rng.uniform(0, SIZE[1])
    f1, f2 = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.1)
    wave = np.sin(np.hypot(xx - cx, yy - cy) * f1) + np.sin(xx * f2 + yy * f2 * rng.uniform(-1, 1))
    arr = np.where(wave > 0, 235, 20).astype(np.uint8)
    return Image.fromarray(np.stack([arr] * 3, axis=-1), "RGB")


def landscape(rng: np.random.Generator) -> Image.Image:
    """Sky gradient, sun, mountains and a field."""
    top, bottom = np.array(_palette(rng, 1, 60, 200)[0]), np.array(_palette(rng, 1, 180, 255)[0])
    t = np.linspace(0, 1, SIZE[1])[:, None, None]
    sky = (top * (1 - t) + bottom * t).repeat(SIZE[0], axis=1).astype(np.uint8)
    img = Image.fromarray(sky, "RGB")
    draw = ImageDraw.Draw(img)
    sx, sy = int(rng.integers(40, SIZE[0] - 40)), int(rng.integers(30, 90))
    draw.ellipse((sx - 22, sy - 22, sx + 22, sy + 22), fill=(250, 220, 120))
    horizon = int(rng.integers(150, 190))
    peaks = [(0, horizon)] + [(int(x), int(rng.integers(70, horizon - 10))) for x in np.linspace(30, 290, 5)]
    draw.polygon([*peaks, (SIZE[0], horizon)], fill=_palette(rng, 1, 50, 120)[0])
    draw.rectangle((0, horizon, SIZE[0], SIZE[1]), fill=(int(rng.integers(40, 90)), int(rng.integers(100, 160)), 50))
    return img.filter(ImageFilter.SMOOTH)


def brushwork(img: Image.Image, rng: np.random.Generator, strokes: int = 400) -> Image.Image:
    """Short strokes a little lighter or darker than the paint beneath: texture, like real paintings."""
    arr = np.asarray(img)
    draw = ImageDraw.Draw(img)
    for _ in range(strokes):
        x, y = int(rng.integers(0, SIZE[0])), int(rng.integers(0, SIZE[1]))
        angle, length = rng.uniform(0, np.pi), rng.uniform(4, 14)
        colour = np.clip(arr[y, x].astype(int) + rng.integers(-40, 41), 0, 255)
        end = (x + length * np.cos(angle), y + length * np.sin(angle))
        draw.line((x, y, *end), fill=tuple(int(c) for c in colour), width=int(rng.integers(1, 4)))
    return img


STYLES: dict[str, Painter] = {
    "Pointillism": pointillism,
    "Colour Field": colour_field,
    "Geometric Abstraction": geometric,
    "Op Art": op_art,
    "Landscape": landscape,
}


def edited_copy(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near-duplicate: crop to ~92 %, rotate <= 1.5 degrees, change brightness."""
    w, h = img.size
    dx, dy = int(w * 0.04), int(h * 0.04)
    out = img.crop((dx, dy, w - dx, h - dy)).rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.BICUBIC)
    return ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.85, 1.15)))


def build_gallery(out: str | Path, per_style: int = 12, copies: int = 6, seed: int = 0) -> Path:
    """Write the gallery under `out/gallery` with `out/gallery/labels.csv`; returns the folder."""
    folder = Path(out) / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    originals = []
    for style, paint in STYLES.items():
        slug = style.lower().replace(" ", "_")
        (folder / slug).mkdir(exist_ok=True)
        for i in range(per_style):
            rel = f"{slug}/{slug}_{i:02d}.jpg"
            img = paint(rng)
            if style != "Op Art":
                img = brushwork(img, rng)
            img.save(folder / rel, "JPEG", quality=92)
            rows.append({"path": rel, "style": style, "kind": "original"})
            originals.append((rel, style, img))
    (folder / "copies").mkdir(exist_ok=True)
    # spread the copies over the styles: style s gets work (2 + s), round-robin
    picks = [(c % len(STYLES)) * per_style + (2 + c) % per_style for c in range(min(copies, len(originals)))]
    for j in picks:
        rel, style, img = originals[j]
        copy_rel = f"copies/{Path(rel).stem}_edited.jpg"
        edited_copy(img, rng).save(folder / copy_rel, "JPEG", quality=55)
        rows.append({"path": copy_rel, "style": style, "kind": f"edited copy of {rel}"})
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "style", "kind"])
        writer.writeheader()
        writer.writerows(rows)
    return folder
