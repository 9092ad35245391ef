"""EmbeddingStore: atomic segments, supersession, compaction, model mixing refused, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artenc.errors import StoreError
from artenc.store import BASE_COLUMNS, ModelSignature, Store, l2_normalize

SIG = ModelSignature(model="m", fingerprint="abc", preprocess={"size": 4}, dim=3)


def _rows(paths: list[str], errors: list[str | None] | None = None) -> pd.DataFrame:
    errors = errors or [None] * len(paths)
    rows, r = [], 0
    for p, e in zip(paths, errors, strict=True):
        rows.append(
            {
                "path": p,
                "relpath": Path(p).name,
                "sha256": f"h-{p}",
                "size": 1,
                "mtime_ns": 1,
                "width": 10,
                "height": 20,
                "error": e,
                "row": -1 if e else r,
            }
        )
        r += 0 if e else 1
    return pd.DataFrame(rows, columns=BASE_COLUMNS)


def test_create_append_open(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    v = l2_normalize(np.array([[1, 0, 0], [0, 2, 0]], dtype=np.float32))
    store.append_segment(_rows(["/b", "/a", "/bad"], [None, None, "not an image"]), v)
    s = Store.open(tmp_path / "s")
    assert list(s.items["path"]) == ["/a", "/b"]  # sorted by path
    np.testing.assert_allclose(s.vectors, [[0, 1, 0], [1, 0, 0]])
    assert s.vectors.dtype == np.float32 and len(s) == 2
    assert s.skipped.to_dict("records")[0]["error"] == "not an image"
    assert s.summary()["skipped"] == 1 and s.summary()["count"] == 2


def test_newer_segment_supersedes_and_compact_keeps_result(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    store.append_segment(_rows(["/a", "/b"]), np.eye(3, dtype=np.float32)[:2])
    store.append_segment(_rows(["/a"]), np.eye(3, dtype=np.float32)[2:])  # /a changed
    before = store.reload().vectors.copy()
    np.testing.assert_allclose(before, [[0, 0, 1], [0, 1, 0]])
    rev = store.revision
    store.compact()
    assert store.segment_ids() == [3]
    np.testing.assert_allclose(store.reload().vectors, before)
    assert store.revision != rev
    assert sorted(p.name for p in store.segment_dir.iterdir()) == [
        "seg-000003.npy",
        "seg-000003.parquet",
    ]


def test_uncommitted_segment_is_ignored(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    store.append_segment(_rows(["/a"]), np.eye(3, dtype=np.float32)[:1])
    # a crash after the vectors were written but before the commit marker
    np.save(store.segment_dir / "seg-000002.npy", np.ones((5, 3), np.float32))
    (store.segment_dir / "seg-000002.parquet.tmp").write_bytes(b"half")
    assert len(Store.open(tmp_path / "s")) == 1
    store.append_segment(_rows(["/b"]), np.eye(3, dtype=np.float32)[1:2])  # reuses id 2 safely
    assert list(Store.open(tmp_path / "s").items["path"]) == ["/a", "/b"]


def test_other_model_refused(tmp_path: Path) -> None:
    Store.create(tmp_path / "s", SIG)
    other = ModelSignature(model="m2", fingerprint="zzz", preprocess={"size": 4}, dim=3)
    with pytest.raises(StoreError, match="refusing to add vectors of 'm2'"):
        Store.create(tmp_path / "s", other)
    pre = ModelSignature(model="m", fingerprint="abc", preprocess={"size": 5}, dim=3)
    with pytest.raises(StoreError, match="refusing"):
        Store.create(tmp_path / "s", pre)


def test_open_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="store not found"):
        Store.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="no meta.json"):
        Store.open(tmp_path / "plain")
    (tmp_path / "plain" / "meta.json").write_text("{broken")
    with pytest.raises(StoreError, match="unreadable store metadata"):
        Store.open(tmp_path / "plain")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.create(tmp_path / "full", SIG)


def test_labels_join_and_no_pickle(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    store.append_segment(_rows(["/a", "/b"]), np.eye(3, dtype=np.float32)[:2])
    store.set_labels(
        pd.DataFrame({"path": ["/a", "/zzz"], "style": ["Baroque", "x"], "width": ["w", "w"]})
    )
    items = Store.open(tmp_path / "s").items
    assert items["style"].tolist()[0] == "Baroque" and pd.isna(items["style"].tolist()[1])
    assert "label_width" in items.columns and items["width"].tolist() == [
        10,
        10,
    ]  # item column kept
    for npy in (tmp_path / "s").rglob("*.npy"):
        np.load(npy, allow_pickle=False)  # raises if an object array was pickled
    assert not list((tmp_path / "s").rglob("*.pkl"))
