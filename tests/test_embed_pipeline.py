"""The decoding workers' path (shared-memory batches, small files read once) gives exactly what
decoding in the embedding process gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artenc.embedding import batch_pixels, collate_records, embed_folders
from artenc.images import ImageLoadError, decode_crop, read_image_bytes
from artenc.preprocess import PreprocessConfig
from artenc.quality import SCORE_COLUMNS
from artenc.store import Store
from tests.conftest import png_claiming, write_gallery


def test_workers_and_in_process_store_the_same_vectors_and_scores(tmp_path: Path, lite0_encoder) -> None:
    write_gallery(tmp_path / "g", 10, size=(300, 240))
    write_gallery(tmp_path / "g", 4, start=10, size=(224, 224), fmt="PNG")
    stores = {}
    for workers in (0, 2):
        out = tmp_path / f"s{workers}"
        report = embed_folders([tmp_path / "g"], out, encoder=lite0_encoder, workers=workers, batch_size=4,
                               progress=False)
        assert report.embedded == 14
        stores[workers] = Store.open(out)
    a, b = (s.items.sort_values("path") for s in (stores[0], stores[2]))  # index: item rows
    assert a["path"].tolist() == b["path"].tolist()
    np.testing.assert_array_equal(stores[0].vectors_at(a.index.to_numpy()), stores[2].vectors_at(b.index.to_numpy()))
    np.testing.assert_array_equal(a[list(SCORE_COLUMNS)].to_numpy(), b[list(SCORE_COLUMNS)].to_numpy())


def test_collate_in_process_gives_numpy_and_batch_pixels_takes_both() -> None:
    pix = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    records, stacked = collate_records([{"pixels": pix[0]}, {"pixels": None}, {"pixels": pix[1]}])
    assert isinstance(stacked, np.ndarray) and [r["has_pixels"] for r in records] == [True, False, True]
    np.testing.assert_array_equal(stacked, pix)
    np.testing.assert_array_equal(batch_pixels(torch.from_numpy(pix)), pix)
    assert batch_pixels(None) is None and collate_records([{"pixels": None}])[1] is None


def test_small_file_claiming_a_huge_size_is_refused_before_decoding(tmp_path: Path) -> None:
    """A file shorter than the header read is read once; its header size is still checked
    before any pixel is decoded (the message names the claimed size)."""
    data = png_claiming(20_000, 30_000)
    path = tmp_path / "small_bomb.png"
    path.write_bytes(data)
    assert read_image_bytes(path) == data  # read whole, once
    with pytest.raises(ImageLoadError, match="20000x30000"):
        decode_crop(path, PreprocessConfig())
