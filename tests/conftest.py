"""Shared fixtures: generated images (no network, no shared data needed)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ONNX exports and other caches go to a per-session temp dir, W&B stays offline."""
    os.environ["ARTENC_CACHE_DIR"] = str(tmp_path_factory.mktemp("artenc-cache"))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def painting(seed: int, size: tuple[int, int] = (320, 256)) -> Image.Image:
    """A synthetic 'painting': smooth colour gradients plus a few shapes, distinct per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    fx, fy = rng.uniform(0.005, 0.05, 2)
    arr = np.stack(
        [
            base[c] * 0.5
            + 60 * np.sin(xx * fx * (c + 1) + yy * fy)
            + 60 * np.cos(yy * fy * (c + 2))
            for c in range(3)
        ],
        axis=-1,
    )
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        arr[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(arr + 128 - base.mean() * 0.5, 0, 255).astype(np.uint8), "RGB")



def png_claiming(width: int, height: int) -> bytes:
    """An 8x8 greyscale PNG whose IHDR claims width x height pixels (CRC fixed), as in a crafted
    decompression bomb: a few hundred bytes that a decoder would expand to width * height."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)

def write_gallery(
    folder: Path, n: int, start: int = 0, fmt: str = "JPEG", size=(320, 256)
) -> list[Path]:
    """Write n synthetic paintings; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"JPEG": "jpg", "PNG": "png"}[fmt]
    paths = []
    for i in range(start, start + n):
        p = folder / f"work_{i:04d}.{ext}"
        painting(i, size).save(p, fmt, quality=90) if fmt == "JPEG" else painting(i, size).save(
            p, fmt
        )
        paths.append(p)
    return paths


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """A folder of 12 synthetic paintings in two sub-folders."""
    root = tmp_path / "gallery"
    write_gallery(root / "a", 6, 0)
    write_gallery(root / "b", 6, 6, fmt="PNG")
    return root


@pytest.fixture(scope="session")
def lite0_encoder():
    """The default encoder on ONNX Runtime, built once per session."""
    from artenc.runtime import create_encoder

    return create_encoder("tf_efficientnet_lite0", runtime="onnx", device="cpu")


@pytest.fixture(scope="session")
def lite0_torch_encoder():
    from artenc.runtime import create_encoder

    return create_encoder("tf_efficientnet_lite0", runtime="torch", device="cpu")


def write_colour_classes(root: Path, *, artist: bool = False) -> Path:
    """3 colour classes x 6 images (48 px) under root/images and root/labels.csv with the columns
    `path`, `style`, `split` (one holdout each) and, when `artist`, `artist` (a0..a2); returns root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["path,style,split" + (",artist" if artist else "")]
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        for i in range(6):
            pixels = (np.array(colour) * 0.7 + rng.integers(0, 80, (48, 48, 3))).clip(0, 255).astype(np.uint8)
            path = f"images/c{c}_{i}.jpg"
            Image.fromarray(pixels).save(root / path)
            rows.append(f"{path},s{c},{'holdout' if i == 5 else 'dev'}" + (f",a{i % 3}" if artist else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
