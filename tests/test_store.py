"""EmbeddingStore: atomic segments, supersession, compaction, model mixing refused, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artenc.atomic import (
    atomic_path,
    atomic_save_npy,
    atomic_save_parquet,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    is_temp_file,
    temp_path_for,
)
from artenc.errors import ParameterError, StoreError
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


# ----- the store's layout and the atomic writes behind it --------------------------------
def test_store_owns_its_layout(tmp_path: Path) -> None:
    from artenc.index import build_index, index_paths, load_index, save_index
    from artenc.verify import KeypointCache, Keypoints

    store = Store.create(tmp_path / "s", SIG)
    store.append_segment(_rows(["/a", "/b"]), np.eye(3, dtype=np.float32)[:2])
    root = tmp_path / "s"
    assert (store.meta_path, store.segment_dir, store.labels_path) == (
        root / "meta.json", root / "segments", root / "labels.parquet")
    assert (store.index_dir, store.keypoints_dir) == (root / "index", root / "keypoints")
    save_index(store, build_index(store.vectors, "flat"))
    assert all(p.parent == store.index_dir and p.is_file() for p in index_paths(store))
    assert load_index(store).kind == "flat"
    cache = KeypointCache(store.keypoints_dir)
    cache.save("ab" * 32, Keypoints(np.zeros((1, 2), np.float32), np.zeros((1, 128), np.uint8)))
    assert cache.path("ab" * 32).is_relative_to(store.keypoints_dir)
    leftovers = [p for p in root.rglob("*") if is_temp_file(p)]
    assert leftovers == []


def test_atomic_write_crash_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    atomic_write_text(target, "old page")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".html" and tmp != target
        tmp.write_text("half a new pa")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    # a crash before the file existed leaves nothing at all
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.npy") as tmp:
        np.save(tmp, np.ones(3))
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_atomic_writers_round_trip(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "m.json", {"dim": 3, "x": [1, 2]})
    atomic_save_npy(tmp_path / "v.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    atomic_save_parquet(tmp_path / "t.parquet", pd.DataFrame({"path": ["/a"], "n": [1]}))
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "m.json").read_text() == '{\n  "dim": 3,\n  "x": [\n    1,\n    2\n  ]\n}'
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy", allow_pickle=False), np.arange(6).reshape(2, 3))
    assert pd.read_parquet(tmp_path / "t.parquet").to_dict("list") == {"path": ["/a"], "n": [1]}
    atomic_save_npy(tmp_path / "v.npy", np.zeros(2, np.int64))  # replaces the old content
    assert np.load(tmp_path / "v.npy").tolist() == [0, 0]
    assert not any(is_temp_file(p) for p in tmp_path.iterdir())


@pytest.mark.parametrize("array", [np.array([{"a": 1}, None], dtype=object),
                                   np.zeros(2, dtype=[("x", "f4"), ("o", "O")])])
def test_atomic_npy_refuses_object_arrays(tmp_path: Path, array: np.ndarray) -> None:
    atomic_save_npy(tmp_path / "v.npy", np.ones(2))
    with pytest.raises(ParameterError, match="^array holds Python objects") as err:
        atomic_save_npy(tmp_path / "v.npy", array)
    assert isinstance(err.value, ValueError)
    assert np.load(tmp_path / "v.npy").tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["v.npy"]


def test_compact_removes_leftovers_of_killed_writers(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    store.append_segment(_rows(["/a"]), np.eye(3, dtype=np.float32)[:1])
    store.append_segment(_rows(["/b"]), np.eye(3, dtype=np.float32)[1:2])
    stale = temp_path_for(store.segment_dir / "seg-000003.parquet")
    stale.write_bytes(b"half")
    assert is_temp_file(stale) and not is_temp_file(store.segment_dir / "seg-000001.parquet")
    store.compact()
    assert sorted(p.name for p in store.segment_dir.iterdir()) == ["seg-000003.npy", "seg-000003.parquet"]
