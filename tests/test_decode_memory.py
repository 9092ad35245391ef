"""Issue 12, case 1: memory bounded for every geometry and format.

A 1 x 10,000 PNG (125 bytes) once cost +2.6 GB in `embed` and in one upload to `serve`. Now
an image beyond `MAX_ASPECT_RATIO` is refused from its header size, before any pixel is
decoded (a skip with its reason in `embed`, a 422 from the web page), and the conversions
to RGB that need arithmetic (alpha, 16-bit, float) run tile by tile, bit-identical to the
whole-image conversion.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import artenc.images as images
from artenc.defaults import MAX_ASPECT_RATIO
from artenc.errors import ParameterError
from artenc.images import ImageLoadError, check_geometry, decode_crop, load_image, open_image
from artenc.preprocess import PreprocessConfig
from tests.conftest import write_gallery
from tests.helpers_memory import can_reset_peak_rss

THIN_1x10000 = ("aspect ratio 1:10000 (1x10000 px) exceeds 1:100, too thin for a meaningful centre crop "
                "(raise max_aspect_ratio to allow it)")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with a few bytes of pixel data and then nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)[:6])


# ----- the rule -----------------------------------------------------------------------------
def test_max_aspect_ratio_default() -> None:
    assert MAX_ASPECT_RATIO == 100


@pytest.mark.parametrize(("size", "reason"), [
    ((1, 10_000), THIN_1x10000),
    ((10_000, 1), "aspect ratio 10000:1 (10000x1 px) exceeds 100:1"),
    ((3, 1000), "aspect ratio 1:333.3 (3x1000 px) exceeds 1:100"),
    ((1, 101), "aspect ratio 1:101 (1x101 px) exceeds 1:100"),
    ((1, 9_000_000), "aspect ratio 1:9000000 (1x9000000 px) exceeds 1:100"),
])
def test_too_thin_is_refused_with_its_geometry(size: tuple[int, int], reason: str) -> None:
    with pytest.raises(ImageLoadError) as err:
        check_geometry(*size, "thin.png")
    assert str(err.value).startswith(f"thin.png: {reason}")


@pytest.mark.parametrize("size", [(1, 100), (100, 1), (7, 700), (1, 1), (2000, 1500)])
def test_up_to_the_limit_is_an_image(size: tuple[int, int]) -> None:
    check_geometry(*size)  # no exception
    crop = decode_crop(encode(Image.new("RGB", size, (200, 10, 10)), "PNG"), PreprocessConfig(size=32))
    assert crop.pixels.shape == (3, 32, 32) and (crop.width, crop.height) == size


def test_limit_is_a_parameter() -> None:
    data = encode(Image.new("L", (1, 10_000), 77), "PNG")
    with pytest.raises(ImageLoadError, match="exceeds 1:100"):
        open_image(data)
    assert open_image(data, max_aspect_ratio=None)[1] == (1, 10_000)
    assert open_image(data, max_aspect_ratio=20_000)[1] == (1, 10_000)
    with pytest.raises(ImageLoadError, match=r"1:10000 \(1x10000 px\) exceeds 1:50\b"):
        open_image(data, max_aspect_ratio=50)
    for bad in (0.5, 0, -3):
        with pytest.raises(ParameterError, match=r"^max_aspect_ratio must be >= 1"):
            decode_crop(data, PreprocessConfig(), max_aspect_ratio=bad)


def test_refused_from_the_header_before_any_pixel_is_decoded() -> None:
    """The file has no pixel data at all: the reason is its geometry, not its truncation."""
    with pytest.raises(ImageLoadError, match=r"^up\.png: aspect ratio 1:10000 \(1x10000 px\)"):
        decode_crop(png_header_only(1, 10_000), PreprocessConfig(), name="up.png")
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        decode_crop(png_header_only(100, 100), PreprocessConfig())


def _formats() -> list[str]:
    from PIL import features

    return ["PNG", "JPEG", "GIF", "TIFF", "BMP"] + [f for f in ("WEBP", "AVIF") if features.check(f.lower())]


@pytest.mark.parametrize("fmt", _formats())
@pytest.mark.parametrize("size", [(1, 10_000), (10_000, 1)])
def test_every_format_refuses_thin_images(fmt: str, size: tuple[int, int], tmp_path: Path) -> None:
    """Every decoder and every caller of `open_image` (decode_crop: embed, queries, serve;
    load_image: training augmentation, thumbnails, verification) applies the same guard."""
    side = 16_383 if fmt in ("WEBP", "AVIF") else 10_000  # WebP/AVIF cap a side at 16,383
    size = tuple(min(s, side) for s in size)
    path = tmp_path / f"thin.{fmt.lower()}"
    Image.new("RGB", size, (30, 60, 90)).save(path, fmt)
    with pytest.raises(ImageLoadError, match=rf"^{path}: aspect ratio .* \({size[0]}x{size[1]} px\) exceeds"):
        decode_crop(path, PreprocessConfig())
    with pytest.raises(ImageLoadError, match="aspect ratio"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_rotated_thin_image_is_refused_before_decoding(fmt: str) -> None:
    """The geometry named is the file's stored one: reading a PNG's EXIF decodes its pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 10,000 x 1, displayed 1 x 10,000
    data = encode(Image.new("RGB", (10_000, 1)), fmt, exif=exif.tobytes())
    with pytest.raises(ImageLoadError, match=r"10000:1 \(10000x1 px\) exceeds 100:1"):
        decode_crop(data, PreprocessConfig())


# ----- tiled conversion: the same pixels, bounded temporaries --------------------------------
def _odd_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(5)
    h, w = 37, 53
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    pal = rgba.convert("RGB").convert("P")
    pal.info["transparency"] = 3
    floats = rng.normal(0, 1e3, (h, w)).astype(np.float32)
    floats[0, :3] = (np.nan, np.inf, -np.inf)
    return {
        "RGBA": rgba, "LA": rgba.convert("LA"), "PA": pal.convert("PA"), "RGBa": rgba.convert("RGBa"),
        "P+transparency": pal, "I;16": Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16)),
        "I (8-bit values)": Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.int32)),
        "I (wide)": Image.fromarray(rng.integers(-70_000, 70_000, (h, w)).astype(np.int32)),
        "F": Image.fromarray(floats), "CMYK": rgba.convert("RGB").convert("CMYK"), "1": rgba.convert("1"),
    }


@pytest.mark.parametrize("tile", [1, 7, 53, 60, 1000])
@pytest.mark.parametrize("kind", sorted(_odd_images()))
def test_tiled_conversion_is_bit_identical(kind: str, tile: int, monkeypatch) -> None:
    img = _odd_images()[kind]
    whole = np.asarray(images.to_rgb(img))
    monkeypatch.setattr(images, "TILE_PIXELS", tile)
    tiled = images.to_rgb(img)
    assert tiled.mode == "RGB" and tiled.size == img.size
    np.testing.assert_array_equal(np.asarray(tiled), whole)


def test_tiles_cover_every_pixel_once() -> None:
    for width, height, pixels in [(53, 37, 7), (10_000, 1, 999), (1, 10_000, 999), (5, 5, 1000), (4, 9, 8)]:
        seen = np.zeros((height, width), dtype=int)
        for left, top, right, bottom in images._tiles(width, height, pixels):
            assert (right - left) * (bottom - top) <= pixels
            seen[top:bottom, left:right] += 1
        assert (seen == 1).all()


def test_float_images_ignore_non_finite_values_when_stretching() -> None:
    arr = np.array([[0.0, 1.0, 2.0, np.nan, np.inf, -np.inf]], dtype=np.float32)
    rgb = np.asarray(images.to_rgb(Image.fromarray(arr)))[0, :, 0]
    assert rgb.tolist() == [0, 127, 255, 0, 255, 0]


_PEAK = """
import sys
from artenc.images import decode_crop
from artenc.preprocess import PreprocessConfig
data = open(sys.argv[1], "rb").read()
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
base = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
decode_crop(data, PreprocessConfig())
print((status("VmHWM:") - base) * 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not can_reset_peak_rss(),
                    reason="needs Linux's resettable peak resident size (/proc/self/clear_refs)")
@pytest.mark.parametrize("kind", ["RGBA", "LA", "P+transparency", "I;16", "F"])
def test_peak_memory_per_decoded_pixel(kind: str, tmp_path: Path) -> None:
    """A fresh process's peak resident memory while decoding a 3000 x 3000 file.

    Bound: 10 bytes a pixel plus 48 bytes a tile pixel. Pillow keeps 8-bit RGB(A) at 4 bytes
    a pixel: the decoded image (<= 4 B/px) plus its RGB copy (4 B/px) plus the resize (<1 B/px
    here); one tile's temporaries (float64 arrays, RGBA copies) stay under 48 B per tile
    pixel. The whole-image conversions this replaced took 20-26 B/px (RGBA copy, white
    background, composite, RGB; float64 arrays): 180-234 MB here, over the 138 MB bound."""
    yy, xx = np.mgrid[0:3000, 0:3000]
    ramp = ((xx * 7 + yy * 3) % 256).astype(np.uint8)
    big = {
        "RGBA": lambda: Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp, ramp // 2 + 60], -1), "RGBA"),
        "LA": lambda: Image.fromarray(np.stack([ramp, ramp.T], -1), "LA"),
        "P+transparency": lambda: Image.fromarray(ramp, "P"),
        "I;16": lambda: Image.fromarray((xx * 21 + yy).astype(np.uint16)),
        "F": lambda: Image.fromarray((xx * 0.5 - yy).astype(np.float32)),
    }[kind]()
    path = tmp_path / ("x.tif" if kind == "F" else "x.png")
    big.save(path, **({"transparency": 0} if kind == "P+transparency" else {}))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, env=env,
                         check=True)
    peak, pixels = int(out.stdout), 3000 * 3000
    assert peak < 10 * pixels + 48 * images.TILE_PIXELS, f"{kind}: {peak / pixels:.1f} bytes per pixel"


# ----- each face: embed skips with the reason, serve answers 422 -----------------------------
def _thin_png(path: Path, size: tuple[int, int]) -> Path:
    Image.new("RGB", size, (120, 40, 200)).save(path)
    return path


def test_embed_records_the_thin_image_skip(tmp_path: Path, lite0_encoder) -> None:
    from artenc.embedding import embed_folders
    from artenc.store import Store

    root = tmp_path / "gallery"
    write_gallery(root, 2)
    thin = _thin_png(root / "strip.png", (1, 10_000))
    report = embed_folders([root], tmp_path / "store", encoder=lite0_encoder, workers=0, progress=False)
    assert (report.discovered, report.embedded, report.skipped) == (3, 2, 1)
    assert report.skipped_files == [{"path": str(thin), "reason": THIN_1x10000}]
    summary = Store.open(tmp_path / "store").summary()
    assert summary["count"] == 2 and summary["skipped_files"] == [{"path": str(thin), "reason": THIN_1x10000}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, lite0_encoder):
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from artenc.embedding import embed_folders
    from artenc.serve.app import create_app
    from artenc.serve.state import ServeSettings

    root = tmp_path_factory.mktemp("thin-serve")
    write_gallery(root / "gallery", 4)
    embed_folders([root / "gallery"], root / "store", encoder=lite0_encoder, workers=0, progress=False)
    settings = ServeSettings(thumbnail_dir=str(root / "thumbs"), clusters="2", workers=1,
                             allowed_hosts=("testserver",))  # TestClient's Host header
    with TestClient(create_app(str(root / "store"), settings, encoder=lite0_encoder)) as c:
        yield c


@pytest.mark.parametrize(("size", "words"), [
    ((1, 10_000), THIN_1x10000),
    ((10_000, 1), "aspect ratio 10000:1 (10000x1 px) exceeds 100:1"),
    ((1, 9_000_000), "aspect ratio 1:9000000 (1x9000000 px) exceeds 1:100"),  # once a 500 (OverflowError)
])
def test_serve_refuses_a_thin_upload_with_422(client, size: tuple[int, int], words: str) -> None:
    data = encode(Image.new("L", size, 200), "PNG")
    r = client.post("/api/search", files={"file": ("strip.png", data, "image/png")})
    assert r.status_code == 422, r.text
    assert f"strip.png: {words}" in r.json()["detail"]
    assert "Traceback" not in r.text
    ok = client.post("/api/search", files={"file": ("w.jpg", encode(Image.new("RGB", (300, 200)), "JPEG"))})
    assert ok.status_code == 200  # the server is still there, answering
