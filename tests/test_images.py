"""Image loading on a catalogue of broken and odd files."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artenc.images import ImageLoadError, discover_images, load_image, open_image
from tests.conftest import painting


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# ---- broken files: each must raise ImageLoadError with a reason naming the problem ----


def _bomb_png() -> bytes:
    """A tiny file declaring 20000 x 20000 pixels (400 MP): a decompression bomb."""
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    return buf.getvalue()


def _corrupt_png_body() -> bytes:
    data = bytearray(_png_bytes(painting(1)))
    data[60:400] = b"\x00" * 340  # wreck the IDAT stream
    return bytes(data)


def _bad_header_jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0" + b"\x13" * 200


BROKEN = {
    "zero_bytes": (b"", "empty file"),
    "text_as_jpg": (b"hello, I am not an image\n" * 10, "not an image"),
    "html_as_png": (b"<!doctype html><html><body>404 Not Found</body></html>", "not an image"),
    "truncated_jpeg": (_jpeg_bytes(painting(2))[:1500], "truncated"),
    "truncated_png": (_png_bytes(painting(3))[:2000], "truncated"),
    "corrupt_png_body": (_corrupt_png_body(), "corrupt"),
    "jpeg_header_garbage": (_bad_header_jpeg(), ""),
    "decompression_bomb": (_bomb_png(), "decompression"),
    "random_bytes": (
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "not an image",
    ),
    "gif_header_only": (b"GIF89a" + struct.pack("<HH", 10, 10), ""),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_files_raise_clear_error(kind: str) -> None:
    data, fragment = BROKEN[kind]
    with pytest.raises(ImageLoadError) as info:
        open_image(data, f"/x/{kind}.bin")
    message = str(info.value)
    assert message.startswith(f"/x/{kind}.bin: ")
    assert fragment in message


def test_pixel_limit_is_configurable() -> None:
    data = _jpeg_bytes(painting(4, (400, 300)))
    open_image(data, "ok.jpg", max_pixels=400 * 300)
    with pytest.raises(ImageLoadError, match="exceeds the limit of 100000"):
        open_image(data, "big.jpg", max_pixels=100_000)


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="cannot read file"):
        load_image(tmp_path / "nope.jpg")


# ---- odd but valid files: all become RGB ----


def _rgba() -> Image.Image:
    img = Image.new("RGBA", (64, 48), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (0, 0, 32, 48))  # opaque blue left half
    return img


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("PNG", "P"),
        ("PNG", "L"),
        ("PNG", "I;16"),
        ("PNG", "1"),
        ("JPEG", "CMYK"),
        ("JPEG", "L"),
        ("TIFF", "RGB"),
        ("TIFF", "CMYK"),
        ("BMP", "RGB"),
        ("WEBP", "RGBA"),
        ("GIF", "P"),
    ],
)
def test_modes_and_formats_become_rgb(fmt: str, mode: str) -> None:
    src = painting(5, (64, 48))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(src.convert("L"), dtype=np.uint16) * 257)
    elif mode in ("RGBA", "LA"):
        img = _rgba().convert(mode)
    else:
        img = src.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out, size = open_image(buf.getvalue(), f"x.{fmt.lower()}")
    assert out.mode == "RGB" and out.size == (64, 48) and size == (64, 48)
    if mode == "RGBA":
        px = np.asarray(out)
        assert tuple(px[10, 50]) == (255, 255, 255)  # transparent -> white, not black or red
        assert tuple(px[10, 5]) == (0, 0, 255)
    if mode == "I;16":  # 16-bit values scaled to 8 bits, not clipped to white
        assert abs(np.asarray(out)[..., 0].astype(int) - np.asarray(src.convert("L"))).max() <= 1


def test_palette_transparency_composited_on_white() -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 0
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    out, _ = open_image(buf.getvalue())
    assert tuple(np.asarray(out)[0, 0]) == (255, 255, 255)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out, _ = open_image(buf.getvalue())
    r, g, b = np.asarray(out)[10, 10]
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    out, size = open_image(_jpeg_bytes(img, exif=exif))
    assert out.size == (20, 40) and size == (20, 40)
    px = np.asarray(out).mean(axis=2)
    assert px[5, 10] > 200 and px[35, 10] < 60  # white half is now on top


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_reported_size_every_format(fmt: str, orientation: int) -> None:
    """The size reported is the displayed one, turned once: TIFF turns the image (and its
    header size) itself while loading, the other formats leave it to EXIF transposition."""
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, fmt, exif=exif.tobytes())
    out, size = open_image(buf.getvalue())
    shown = (20, 40) if orientation in (6, 8) else (40, 20)
    assert out.size == shown and size == shown


def test_large_jpeg_draft_decoding() -> None:
    big = painting(6, (2000, 1500))
    data = _jpeg_bytes(big)
    full, size = open_image(data)
    small, size2 = open_image(data, draft_size=256)
    assert size == size2 == (2000, 1500)
    assert full.size == (2000, 1500)
    assert min(small.size) >= 256 and small.size[0] < 1000  # decoded at 1/4 scale: 500 x 375


def test_discover_images_recursive_skips_hidden_and_non_images(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for p in ["a/x.JPG", "a/b/y.png", "z.webp", ".hidden/h.jpg", "a/.dot.jpg", "notes.txt"]:
        (tmp_path / p).write_bytes(b"x")
    (tmp_path / "dir.jpg").mkdir()  # a folder with an image-like name
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in discover_images([tmp_path])]
    assert found == ["a/b/y.png", "a/x.JPG", "z.webp"]
    with pytest.raises(FileNotFoundError):
        discover_images([tmp_path / "missing"])


def test_trim_borders_crops_letterbox_bars_only() -> None:
    from artenc.preprocess import PreprocessConfig, resize_and_crop, trim_borders

    work = painting(8, (160, 100))
    boxed = Image.new("RGB", (160, 160))
    boxed.paste(work, (0, 30))  # black bars above and below, JPEG-like noise in them
    noisy = np.asarray(boxed).copy()
    noisy[:30] = np.random.default_rng(0).integers(0, 8, noisy[:30].shape)
    boxed = Image.fromarray(noisy)
    assert trim_borders(boxed).size == (160, 100)
    assert trim_borders(work).size == work.size  # nothing to trim
    dark = Image.new("RGB", (100, 100), (5, 5, 5))
    dark.paste((200, 200, 200), (45, 45, 55, 55))  # a dark painting with a small light spot: kept whole
    assert trim_borders(dark).size == (100, 100)
    cfg = PreprocessConfig(trim_borders=True)
    assert resize_and_crop(boxed, cfg).size == (224, 224)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg


# ---- the one decode-and-crop path ----


def _reference_crop(img: Image.Image, cfg) -> np.ndarray:
    """torchvision's Resize(resize_to) + CenterCrop(size), written out: the whole image resized."""
    w, h = img.size
    t = cfg.resize_to
    new = (t, int(t * h / w)) if w <= h else (int(t * w / h), t)
    resized = img.resize(new, Image.Resampling.BICUBIC)
    left, top = int(round((new[0] - cfg.size) / 2.0)), int(round((new[1] - cfg.size) / 2.0))
    return np.asarray(resized.crop((left, top, left + cfg.size, top + cfg.size))).transpose(2, 0, 1)


@pytest.mark.parametrize("size", [(300, 260), (260, 300), (224, 224), (2000, 1500), (64, 900), (900, 64), (17, 23)])
def test_decode_crop_matches_resize_then_crop(size: tuple[int, int]) -> None:
    from artenc.images import decode_crop
    from artenc.preprocess import PreprocessConfig

    cfg = PreprocessConfig()
    img = painting(11, (max(size[0], 64), max(size[1], 64))).resize(size)
    data = _png_bytes(img)
    crop = decode_crop(data, cfg, name="x.png")
    assert crop.pixels.dtype == np.uint8 and crop.pixels.shape == (3, 224, 224)
    assert (crop.width, crop.height) == size
    assert crop.sha256 == hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(crop.pixels, _reference_crop(img, cfg))  # ordinary geometry: exact


def test_decode_crop_from_path_and_bytes_agree(tmp_path: Path) -> None:
    from artenc.images import decode_crop
    from artenc.preprocess import PreprocessConfig

    cfg = PreprocessConfig(size=96, crop_pct=0.9, interpolation="bilinear")
    path = tmp_path / "w.jpg"
    path.write_bytes(_jpeg_bytes(painting(12, (1200, 800))))
    a, b = decode_crop(path, cfg), decode_crop(path.read_bytes(), cfg)
    assert np.array_equal(a.pixels, b.pixels) and (a.width, a.height, a.sha256) == (b.width, b.height, b.sha256)
    assert a.pixels.shape == (3, 96, 96) and (a.width, a.height) == (1200, 800)
    with pytest.raises(ImageLoadError, match="cannot read file"):
        decode_crop(tmp_path / "missing.jpg", cfg)
    with pytest.raises(ImageLoadError, match=r"^upload\.png: not an image"):
        decode_crop(b"not an image at all", cfg, name="upload.png")


@pytest.mark.parametrize("size", [(1, 10_000), (10_000, 1), (3, 40_000), (1, 1)])
def test_crop_plan_bounds_resampling_for_any_geometry(size: tuple[int, int]) -> None:
    from artenc.preprocess import FULL_RESIZE_LIMIT, PreprocessConfig, crop_plan

    cfg = PreprocessConfig()
    plan = crop_plan(*size, cfg)
    w, h = size
    full_cost = plan.resized[0] * (h + plan.resized[1])
    assert plan.full_resize == (full_cost <= FULL_RESIZE_LIMIT)
    assert plan.size == (224, 224)  # what gets resampled is the output, never the resized whole
    x0, y0, x1, y1 = plan.box
    assert 0 <= x0 < x1 <= w + 1e-9 and 0 <= y0 < y1 <= h + 1e-9
    if max(size) >= 10_000:
        assert not plan.full_resize  # 1 x 10,000 would otherwise become 256 x 2,560,000 (1.9 GB RGB)


@pytest.mark.parametrize("size", [(8, 1000), (1000, 8), (260, 300), (50, 300)])
def test_bounded_path_stays_close_to_the_reference(size, monkeypatch) -> None:
    import artenc.preprocess as preprocess

    cfg = preprocess.PreprocessConfig()
    img = painting(13, (max(size[0], 64), max(size[1], 64))).resize(size)
    reference = np.asarray(preprocess.resize_and_crop(img, cfg)).astype(int)
    monkeypatch.setattr(preprocess, "FULL_RESIZE_LIMIT", 0)  # force the box path
    assert not preprocess.crop_plan(*size, cfg).full_resize
    bounded = np.asarray(preprocess.resize_and_crop(img, cfg)).astype(int)
    diff = np.abs(bounded - reference)
    assert diff.max() <= 16 and diff.mean() < 0.1  # same filter taps up to float rounding


_PEAK_SCRIPT = """
import io, resource, sys
import numpy as np
from PIL import Image
from artenc.images import decode_crop
from artenc.preprocess import PreprocessConfig
rng = np.random.default_rng(0)
files = []
for w, h in ((1, 10_000), (10_000, 1)):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    files.append(buf.getvalue())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shapes = [decode_crop(f, PreprocessConfig(), max_aspect_ratio=None).pixels.shape for f in files]
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(shapes, grown)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss counts KiB on Linux only")
def test_thin_images_crop_without_a_large_intermediate() -> None:
    """With the aspect-ratio guard lifted (max_aspect_ratio=None), the peak memory of a fresh
    process grows by far less than the 1.9 GB that resizing a 1 x 10,000 image to short side
    256 would take (Pillow allocates outside tracemalloc): the box path of `resize_and_crop`."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, env=env, check=True)
    shapes, grown_kib = out.stdout.rsplit(" ", 1)
    assert shapes == "[(3, 224, 224), (3, 224, 224)]"
    assert int(grown_kib) < 100 * 1024, f"peak memory grew by {int(grown_kib) // 1024} MiB"


def test_thin_images_are_skipped_with_their_geometry(tmp_path: Path, lite0_encoder) -> None:
    """Issue 12, case 1: beyond MAX_ASPECT_RATIO (1:100) a file is refused from its header,
    with a reason naming its geometry, and the files beside it still embed."""
    from artenc.embedding import encode_files

    paths = []
    for w, h in ((1, 10_000), (10_000, 1), (30, 3000)):
        path = tmp_path / f"thin_{w}x{h}.png"
        Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    vectors, errors = encode_files(paths, lite0_encoder)
    assert errors[:2] == [
        "aspect ratio 1:10000 (1x10000 px) exceeds 1:100, too thin for a meaningful centre crop "
        "(raise max_aspect_ratio to allow it)",
        "aspect ratio 10000:1 (10000x1 px) exceeds 100:1, too thin for a meaningful centre crop "
        "(raise max_aspect_ratio to allow it)",
    ]
    assert errors[2] is None  # 1:100 exactly is still an image
    np.testing.assert_allclose(np.linalg.norm(vectors[2]), 1.0, atol=1e-4)
    assert not vectors[:2].any()
