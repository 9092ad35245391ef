"""More cases of issue 12's kinds, found by a newcomer after the first fixes: each right value."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from artenc.cli import main
from artenc.cluster import parse_k_range
from artenc.embedding import embed_folders
from artenc.errors import ParameterError, StoreError
from artenc.images import scan_images
from artenc.store import ModelSignature, Store
from tests.conftest import painting, png_claiming, write_gallery
from tests.helpers_search import vector_store


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_given_as_a_root_is_not_opened(tmp_path) -> None:
    """Reading a FIFO blocks forever: given directly it is counted, never opened."""
    painting(0).save(tmp_path / "ok.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    found = scan_images([tmp_path / "ok.jpg", tmp_path / "pipe.jpg"])
    assert [p.name for p in found.images] == ["ok.jpg"]
    assert [p.name for p in found.not_images] == ["pipe.jpg"]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root reads any folder (chmod 000 has no effect)")
def test_an_unreadable_folder_keeps_its_vectors(tmp_path, lite0_encoder) -> None:
    """A folder that cannot be listed (permissions, a flaky mount) is not 'gone'."""
    write_gallery(tmp_path / "img" / "sub", 2)
    painting(9).save(tmp_path / "img" / "top.jpg")
    embed_folders([tmp_path / "img"], tmp_path / "s", encoder=lite0_encoder, workers=0, progress=False)
    os.chmod(tmp_path / "img" / "sub", 0)
    try:
        again = embed_folders([tmp_path / "img"], tmp_path / "s", encoder=lite0_encoder, workers=0, progress=False)
    finally:
        os.chmod(tmp_path / "img" / "sub", 0o755)
    assert again.removed == 0 and len(Store.open(tmp_path / "s")) == 3


def test_the_gone_rule_only_removes_missing_paths(tmp_path) -> None:
    from artenc.embedding import _gone

    (tmp_path / "here.jpg").write_bytes(b"x")
    assert not _gone(str(tmp_path / "here.jpg")) and _gone(str(tmp_path / "missing.jpg"))


def test_leaks_ignore_works_without_a_label(tmp_path, caplog) -> None:
    """`dedup --across` with a missing or blank label: no crash, the work is on no side."""
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    x[1] = x[0]  # identical to work 0
    x[3] = x[2]
    store = vector_store(tmp_path, x, {"split": ["dev", "", "dev", "holdout", " ", "dev"]})
    assert main(["dedup", str(store.root), "--no-verify", "--across", "split", "--json"]) == 0
    from artenc.dedup import find_duplicates

    report = find_duplicates(store, verify=False, across="split")
    assert [sorted(g.rows) for g in report.groups] == [[2, 3]]  # 0~1: 1 has no label, so no leak
    assert report.groups[0].sides == ["dev", "holdout"]


def test_a_huge_k_range_is_cut_before_it_is_listed() -> None:
    assert parse_k_range("2:1000000000:1", max_k=6) == [2, 3, 4, 5, 6]
    assert parse_k_range("5:100:2", max_k=4) == []
    with pytest.raises(ParameterError, match="gives no k >= 1"):
        parse_k_range("0:1", max_k=10)


def test_a_store_path_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a store folder"):
        Store.create(tmp_path / "file", ModelSignature("m", "f", {}, 4))


def test_label_columns_that_would_collide_are_refused_before_embedding(tmp_path, lite0_encoder) -> None:
    write_gallery(tmp_path / "img", 2)
    names = sorted(p.name for p in (tmp_path / "img").iterdir())
    pd.DataFrame({"path": names, "width": ["a", "b"], "label_width": ["c", "d"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ParameterError, match="label_width"):
        embed_folders([tmp_path / "img"], tmp_path / "s", labels=tmp_path / "l.csv", encoder=lite0_encoder,
                      workers=0, progress=False)
    assert not (tmp_path / "s" / "segments").exists() or not any((tmp_path / "s" / "segments").iterdir())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_thumbnail_of_a_fifo_is_refused(tmp_path) -> None:
    from artenc.serve.thumbnails import ThumbnailCache, ThumbnailError

    os.mkfifo(tmp_path / "a.jpg")
    with pytest.raises(ThumbnailError, match="not a regular file"):
        ThumbnailCache(tmp_path / "thumbs").get(str(tmp_path / "a.jpg"), "ab" * 32)


def gif_with_a_huge_first_frame(width: int = 65535, height: int = 65535) -> bytes:
    """A few dozen bytes: a 16 x 16 screen whose first frame claims width x height, disposal 2 (Pillow's
    GIF plugin allocates that frame's disposal area inside `Image.open`)."""
    import struct

    return (b"GIF89a" + struct.pack("<HHBBB", 16, 16, 0, 0, 0)
            + b"\x21\xf9\x04\x08\x00\x00\x00\x00"  # graphic control: disposal 2
            + b"\x2c" + struct.pack("<4HB", 0, 0, width, height, 0)
            + b"\x02\x02\x4c\x01\x00\x3b")


def test_a_gif_frame_bomb_is_refused_before_pillow_allocates_it() -> None:
    import tracemalloc

    from artenc.images import ImageLoadError, open_image

    data = gif_with_a_huge_first_frame()
    assert len(data) < 64  # a few dozen bytes
    tracemalloc.start()
    with pytest.raises(ImageLoadError, match="first GIF frame reaches 65535x65535"):
        open_image(data, "bomb.gif")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # a few MB, not the 4 GB of the disposal area
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (40, 30), 3).save(buf, "GIF")  # an ordinary GIF still decodes
    assert open_image(buf.getvalue(), "ok.gif")[1] == (40, 30)


def test_icons_are_refused_as_unsupported() -> None:
    import io

    from PIL import Image

    from artenc.images import ImageLoadError, open_image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "ICO")
    with pytest.raises(ImageLoadError, match="unsupported image format ICO"):
        open_image(buf.getvalue(), "x.ico")


def test_a_thumbnail_is_only_made_from_the_bytes_that_were_embedded(tmp_path) -> None:
    """The cache is keyed by content: a file edited since embedding must not file its new
    picture under the old hash (another store holding the original would show it)."""
    from artenc.images import sha256_hex
    from artenc.serve.thumbnails import ThumbnailCache, ThumbnailError

    painting(1).save(tmp_path / "a.png")
    original = sha256_hex((tmp_path / "a.png").read_bytes())
    cache = ThumbnailCache(tmp_path / "thumbs")
    assert cache.get(str(tmp_path / "a.png"), original).is_file()
    painting(2).save(tmp_path / "b.png")
    with pytest.raises(ThumbnailError, match="changed since it was embedded"):
        cache.get(str(tmp_path / "b.png"), "0" * 64)


def test_a_skipped_file_is_tried_again_once_its_cause_is_gone(tmp_path, lite0_encoder) -> None:
    """Skipped with a pixel limit, embedded once the limit is raised (the skip message says
    "raise max_pixels"): a skip is never final."""
    write_gallery(tmp_path / "img", 2)
    first = embed_folders([tmp_path / "img"], tmp_path / "s", encoder=lite0_encoder, workers=0,
                          progress=False, max_pixels=1000)
    assert (first.embedded, first.skipped) == (0, 2)
    again = embed_folders([tmp_path / "img"], tmp_path / "s", encoder=lite0_encoder, workers=0, progress=False)
    assert (again.embedded, again.skipped, again.unchanged) == (2, 0, 0)
    assert len(Store.open(tmp_path / "s")) == 2


def test_a_huge_file_with_a_refused_header_is_not_read_whole(tmp_path) -> None:
    """Memory follows what is decoded, not the file's size: a 512 MB (sparse) PNG whose header
    claims 20,000 x 30,000 px is refused after reading 64 KiB."""
    import tracemalloc

    from artenc.images import ImageLoadError, decode_crop, read_image_bytes
    from artenc.preprocess import PreprocessConfig

    data = png_claiming(20_000, 30_000)
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(512 * 2**20)  # sparse: no disk used
    tracemalloc.start()
    for call in (lambda: read_image_bytes(path), lambda: decode_crop(path, PreprocessConfig())):
        with pytest.raises(ImageLoadError, match="20000x30000"):
            call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20


def test_copy_unique_keeps_a_picture_whose_keeper_file_is_gone(tmp_path) -> None:
    """A and B are the same picture, A (the keeper) was deleted: B is copied in its place."""
    from artenc.dedup import copy_unique, find_duplicates

    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    x[1] = x[0]
    store = vector_store(tmp_path, x)
    for p in store.items["path"]:
        if not os.path.exists(p):
            painting(0).save(p)
    report = find_duplicates(store, verify=False)
    assert len(report.groups) == 1
    keeper = report.groups[0].keep_path
    os.unlink(keeper)
    result = copy_unique(store, report, tmp_path / "unique")
    assert len(result.copied) == 2  # the surviving copy of the picture, and the other work
    assert not [s for s in result.skipped if s["path"] != keeper]
