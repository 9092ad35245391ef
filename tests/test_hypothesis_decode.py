"""Property-based tests of the one decode-and-crop path (`artenc.images.decode_crop`).

Hypothesis generates small image files of random modes (1, L, LA, P with and without
transparency, RGB, RGBA, CMYK, I;16, I, F), formats (PNG, JPEG, WebP, TIFF, BMP, GIF, and
AVIF where Pillow reads it), sizes and aspect ratios (1 x N and N x 1 included), alpha and
EXIF orientation, and checks for each file:

- `decode_crop` raises nothing but ImageLoadError, and only the aspect-ratio refusal for
  these valid files: refused exactly when the long side exceeds `max_aspect_ratio` times the
  short side, with the reason naming the geometry;
- otherwise it returns uint8 (3, S, S) and the file's size after EXIF orientation;
- the memory one call takes stays bounded (see `_check_memory` for the bounds and why).

A fixed seed and a small example budget keep the CI run short; `-m slow` runs a larger budget.
"""

from __future__ import annotations

import io
import sys
import tracemalloc
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

import artenc.images as images
from artenc.defaults import MAX_ASPECT_RATIO
from artenc.images import ImageLoadError, decode_crop
from artenc.preprocess import FULL_RESIZE_LIMIT, PreprocessConfig
from tests.helpers_memory import can_reset_peak_rss

MODES = ("1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF") + (("AVIF",) if features.check("avif") else ())
EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "AVIF"})  # those that keep an EXIF block
SWAPS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter


def _image(mode: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A width x height image of `mode` with random content (alpha, palette, float specials)."""
    w, h = size
    u8 = lambda *shape: rng.integers(0, 256, (h, w, *shape), dtype=np.uint8)  # noqa: E731
    if mode == "1":
        return Image.fromarray(u8() > 127)
    if mode in ("P", "P+transparency"):
        img = Image.fromarray(u8(), "P")
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if mode == "P+transparency":
            img.info["transparency"] = int(rng.integers(0, 256))
        return img
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    if mode == "I":
        top = int(rng.choice([256, 65536, 2**31 - 1]))
        return Image.fromarray(rng.integers(-top // 2 if top > 256 else 0, top, (h, w)).astype(np.int32))
    if mode == "F":
        arr = (rng.normal(0, 1, (h, w)) * 10.0 ** rng.integers(-3, 30)).astype(np.float32)
        if rng.random() < 0.3:
            arr.flat[rng.integers(0, arr.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
        return Image.fromarray(arr)
    bands = {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,), "CMYK": (4,)}[mode]
    arr = u8(*bands)
    if mode in ("LA", "RGBA") and rng.random() < 0.5:
        arr[..., -1] = rng.choice([0, 255])  # fully transparent or fully opaque
    return Image.fromarray(arr, mode)


def _encode(img: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    kw = {"quality": 90} if fmt in ("JPEG", "WEBP", "AVIF") else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@cache
def _combos() -> tuple[tuple[str, str], ...]:
    """(format, mode) pairs the installed Pillow can write (it converts some modes on saving)."""
    rng = np.random.default_rng(0)
    ok = []
    for fmt in FORMATS:
        for mode in MODES:
            try:
                data = _encode(_image(mode, (5, 3), rng), fmt)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            ok.append((fmt, mode))
            decode_crop(data, PreprocessConfig(size=8))  # imports the plugin before memory is traced
    return tuple(ok)


@st.composite
def image_files(draw) -> dict:
    fmt, mode = draw(st.sampled_from(_combos()))
    side = st.integers(1, 48)
    thin = st.tuples(st.integers(1, 3), st.integers(2, 3000))
    w, h = draw(st.one_of(st.tuples(side, side), thin, thin.map(lambda s: s[::-1])))
    orientation = draw(st.integers(1, 8)) if fmt in EXIF_FORMATS else 1
    seed = draw(st.integers(0, 2**32 - 1))
    data = _encode(_image(mode, (w, h), np.random.default_rng(seed)), fmt, orientation)
    return {"format": fmt, "mode": mode, "stored": (w, h), "orientation": orientation, "data": data}


def _rss_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


MEMORY_LOG: list[tuple] = []


def _check_memory(traced_peak: int, rss_peak: int | None, pixels: int, file_bytes: int, size: int) -> None:
    """Memory bounds of one `decode_crop` call.

    Python and numpy allocations (tracemalloc): the float64 arrays of one conversion tile
    (at most four of 8 B a pixel, and only `TILE_PIXELS` pixels however large the image),
    the file's bytes read back in chunks (at most twice the file), the crop as numpy arrays
    (a few copies of 3 S^2), plus 256 KiB of Python objects.
    Native memory (Pillow allocates outside tracemalloc; the growth of the resident peak,
    Linux only): 16 B a decoded pixel (Pillow's 4-byte pixels: the decoded image, an EXIF
    turned copy, its RGB conversion, one more copy), the resampling of at most
    `FULL_RESIZE_LIMIT` 4-byte pixels, plus 16 MiB for the allocator and tracemalloc's own
    records. The 1 x 10,000 PNG of issue 12 took 1.9 GB here.
    """
    tile = min(pixels, images.TILE_PIXELS)
    MEMORY_LOG.append((traced_peak, rss_peak, pixels, file_bytes, size))
    assert traced_peak <= 32 * tile + 2 * file_bytes + 16 * size * size + 256 * 1024, (traced_peak, pixels)
    if rss_peak is not None:
        assert rss_peak <= 16 * pixels + 4 * FULL_RESIZE_LIMIT + 16 * 2**20, (rss_peak, pixels)


def _decode_measured(data: bytes, cfg: PreprocessConfig, max_aspect_ratio: float | None):
    measure_rss = sys.platform.startswith("linux") and can_reset_peak_rss()
    if measure_rss:
        base = _rss_kib("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    tracemalloc.start()
    try:
        return decode_crop(data, cfg, max_aspect_ratio=max_aspect_ratio, name="gen"), None
    except ImageLoadError as exc:
        return None, exc
    finally:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss_peak = (_rss_kib("VmHWM:") - base) * 1024 if measure_rss else None
        _decode_measured.last = (traced_peak, rss_peak)


def _check(case: dict, size: int, max_aspect_ratio: float | None) -> None:
    w, h = case["stored"]
    shown = (h, w) if case["orientation"] in SWAPS else (w, h)
    crop, error = _decode_measured(case["data"], PreprocessConfig(size=size), max_aspect_ratio)
    too_thin = max_aspect_ratio is not None and max(w, h) > max_aspect_ratio * min(w, h)
    if too_thin:
        assert crop is None and error is not None
        # the geometry of the header: as stored, or already turned (TIFF turns on loading)
        header = shown if case["format"] == "TIFF" else (w, h)
        assert str(error).startswith("gen: aspect ratio ") and f"({header[0]}x{header[1]} px) exceeds" in str(error)
    else:
        assert error is None, f"{case['format']} {case['mode']} {w}x{h}: {error}"
        assert crop.pixels.dtype == np.uint8 and crop.pixels.shape == (3, size, size)
        assert (crop.width, crop.height) == shown
    _check_memory(*_decode_measured.last, pixels=w * h, file_bytes=len(case["data"]), size=size)


_COMMON = dict(derandomize=True, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_LIMITS = st.sampled_from([MAX_ASPECT_RATIO, None, 2.5])
_SIZES = st.sampled_from([24, 64, 224])


@settings(max_examples=300, **_COMMON)
@given(case=image_files(), size=_SIZES, max_aspect_ratio=_LIMITS)
def test_decode_crop_properties(case: dict, size: int, max_aspect_ratio: float | None) -> None:
    _check(case, size, max_aspect_ratio)


@pytest.mark.slow
@settings(max_examples=3000, **_COMMON)
@given(case=image_files(), size=_SIZES, max_aspect_ratio=_LIMITS)
def test_decode_crop_properties_many(case: dict, size: int, max_aspect_ratio: float | None) -> None:
    _check(case, size, max_aspect_ratio)


_LOSSLESS_ALPHA = {"LA": ("PNG", "TIFF"), "RGBA": ("PNG", "TIFF", "WEBP"), "P+transparency": ("PNG", "GIF")}


@settings(max_examples=40, **_COMMON)
@given(mode_fmt=st.sampled_from([(m, f) for m, fs in _LOSSLESS_ALPHA.items() for f in fs]),
       w=st.integers(1, 60), h=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_fully_transparent_is_white(mode_fmt: tuple[str, str], w: int, h: int, seed: int) -> None:
    """Transparency is composited on white, whatever the hidden colours."""
    mode, fmt = mode_fmt
    rng = np.random.default_rng(seed)
    if mode == "P+transparency":
        img = Image.fromarray(np.full((h, w), 7, np.uint8), "P")
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        img.info["transparency"] = 7
    else:
        arr = np.asarray(_image(mode, (w, h), rng)).copy()
        arr[..., -1] = 0
        img = Image.fromarray(arr, mode)
    data = _encode(img, fmt) if fmt != "WEBP" else _lossless_webp(img)
    crop = decode_crop(data, PreprocessConfig(size=16), max_aspect_ratio=None)
    assert (crop.pixels == 255).all()


def _lossless_webp(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP", lossless=True)
    return buf.getvalue()
