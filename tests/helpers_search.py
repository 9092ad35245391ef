"""Fixtures for the search tests: synthetic stores from arrays, generated paintings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from artenc.store import BASE_COLUMNS, ModelSignature, Store, l2_normalize


def vector_store(root: Path, vectors: np.ndarray, labels: dict[str, list] | None = None,
                 sizes: list[tuple[int, int]] | None = None, dtype: str | None = None) -> Store:
    """A store holding `vectors` (normalised) for fake paths root/img_00000.jpg..., kept as
    `dtype` (`Store.create`; None: float32)."""
    vectors = l2_normalize(vectors)
    n, dim = vectors.shape
    store = Store.create(root / "store", ModelSignature("synthetic", "fp-test", {}, dim), dtype=dtype)
    if n == 0:
        return store
    paths = [str(root / f"img_{i:05d}.jpg") for i in range(n)]
    sizes = sizes or [(100, 100)] * n
    rows = pd.DataFrame({
        "path": paths, "relpath": [Path(p).name for p in paths], "sha256": [f"{i:064x}" for i in range(n)],
        "size": [1000] * n, "mtime_ns": [0] * n, "width": [w for w, _ in sizes], "height": [h for _, h in sizes], "error": [None] * n,
        "row": np.arange(n),
    }, columns=BASE_COLUMNS)
    store.append_segment(rows, vectors)
    if labels:
        store.set_labels(pd.DataFrame({"path": paths, **labels}))
    return store.reload()


def clustered(n_clusters: int, per_cluster: int, dim: int = 32, spread: float = 0.15,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `n_clusters` random centres; returns (vectors, true labels)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((n_clusters, dim)))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    x = centres[labels] + spread * rng.standard_normal((len(labels), dim)) / np.sqrt(dim)
    return l2_normalize(x).astype(np.float32), labels


def painting(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A textured random 'painting' with enough structure for SIFT."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(noise).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(img)
    for _ in range(25):
        x0, y0 = rng.integers(0, size[0]), rng.integers(0, size[1])
        x1, y1 = x0 + rng.integers(10, 90), y0 + rng.integers(10, 90)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour,
                                                                   outline=(0, 0, 0))
    return img


def edited(img: Image.Image, seed: int) -> Image.Image:
    """A near-duplicate: crop ~85 %, rotate 2 degrees, resize, brighten."""
    rng = np.random.default_rng(seed)
    w, h = img.size
    f = 0.85
    left, top = int(rng.integers(0, int(w * (1 - f)))), int(rng.integers(0, int(h * (1 - f))))
    out = img.crop((left, top, left + int(w * f), top + int(h * f))).rotate(2, resample=Image.BICUBIC)
    out = out.resize((int(out.width * 0.9), int(out.height * 0.9)), Image.BICUBIC)
    return out.point(lambda v: min(255, int(v * 1.1)))


_IMAGE_STORES: dict[str, Store] = {}


def image_store(tmp_path_factory, encoder=None) -> Store:
    """A real store (embedded with the default model) of 12 paintings and 3 edited copies.

    Labels: `split` (p00-p05 train, p06-p11 test) and `style`. Copies: p00_copy in test
    (a planted leak), p01_copy in train, p07_copy in test. Built once per test session.
    """
    key = str(tmp_path_factory.getbasetemp())
    if key in _IMAGE_STORES:
        return _IMAGE_STORES[key]
    from artenc.embedding import embed_folders

    root = tmp_path_factory.mktemp("paintings")
    images = root / "images"
    images.mkdir()
    split = {}
    for i in range(12):
        painting(i).save(images / f"p{i:02d}.png")
        split[f"p{i:02d}.png"] = "train" if i < 6 else "test"
    for i, side in ((0, "test"), (1, "train"), (7, "test")):
        edited(painting(i), 100 + i).save(images / f"p{i:02d}_copy.jpg", quality=60)
        split[f"p{i:02d}_copy.jpg"] = side
    labels = pd.DataFrame({"path": list(split), "split": list(split.values()),
                           "style": ["a" if n[2] in "02468" else "b" for n in split]})
    labels.to_csv(root / "labels.csv", index=False)
    embed_folders([images], root / "store", labels=root / "labels.csv", workers=0, progress=False,
                  encoder=encoder)
    store = Store.open(root / "store")
    _IMAGE_STORES[key] = store
    return store
