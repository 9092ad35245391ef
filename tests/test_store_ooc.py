"""Out-of-core store: block reads equal the materialised view, float16 storage, `summary` without
vector files, compaction only when worth it, no-op re-runs write nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artenc.embedding import embed_folders
from artenc.errors import ParameterError, StoreError
from artenc.store import BASE_COLUMNS, REMOVED_ROW, ModelSignature, Store, l2_normalize
from tests.conftest import painting, write_gallery

DIM = 6
SIG = ModelSignature(model="m", fingerprint="abc", preprocess={"size": 4}, dim=DIM)


def _rows(paths: list[str], skipped: set[str] = frozenset(), tag: str = "") -> pd.DataFrame:
    """Segment rows for `paths` (those in `skipped` without a vector)."""
    out, r = [], 0
    for p in paths:
        bad = p in skipped
        out.append({"path": p, "relpath": p.lstrip("/"), "sha256": f"h{tag}-{p}", "size": len(p), "mtime_ns": 7,
                    "width": 10, "height": 20, "error": "not an image" if bad else None, "row": -1 if bad else r})
        r += 0 if bad else 1
    return pd.DataFrame(out, columns=BASE_COLUMNS)


def _append(store: Store, paths: list[str], rng: np.random.Generator, skipped: set[str] = frozenset(),
            tag: str = "") -> None:
    n = sum(p not in skipped for p in paths)
    store.append_segment(_rows(paths, skipped, tag), l2_normalize(rng.normal(size=(n, DIM))))


def _old_view(root: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The store's items and vectors as the in-memory store computed them before it went out of
    core: every segment read whole, concatenated, newest row per path, sorted, fancy-indexed."""
    frames, blocks, offset = [], [], 0
    for f in sorted((root / "segments").glob("seg-*.parquet")):
        df = pd.read_parquet(f)
        vec = np.load(f.with_suffix(".npy"))
        row = df["row"].to_numpy()
        df["row"] = np.where(row >= 0, row + offset, row)
        offset += len(vec)
        frames.append(df)
        blocks.append(vec)
    rows = pd.concat(frames, ignore_index=True).drop_duplicates("path", keep="last").sort_values("path", kind="stable")
    rows = rows[rows["row"] != REMOVED_ROW]
    ok = rows[rows["row"] >= 0]
    vectors = np.concatenate(blocks).astype(np.float32)[ok["row"].to_numpy(dtype=np.int64)]
    return ok.reset_index(drop=True), vectors


def _assert_views_equal(store: Store, block_rows: int, rng: np.random.Generator) -> None:
    items, vectors = _old_view(store.root)
    store.reload()
    assert len(store) == len(items)
    assert store.items["path"].tolist() == items["path"].tolist()
    for col in ("relpath", "sha256", "size", "width"):
        assert store.items[col].tolist() == items[col].tolist()
    got = [(off, b) for off, b in store.vector_blocks(block_rows=block_rows)]
    assert all(b.dtype == np.float32 and b.flags.c_contiguous and len(b) <= block_rows for _, b in got)
    assert [off for off, _ in got] == list(range(0, len(items), block_rows))
    whole = np.concatenate([b for _, b in got]) if got else np.zeros((0, DIM), np.float32)
    np.testing.assert_array_equal(whole, vectors)
    np.testing.assert_array_equal(store.vectors, vectors)
    # `summary` of a store just opened (from the Parquet footers when they settle the counts)
    # equals the one from the row layout
    assert Store.open(store.root).summary() == store.summary() and store.summary()["count"] == len(items)
    if len(items):
        pick = rng.integers(0, len(items), size=min(3 * len(items), 40))
        np.testing.assert_array_equal(store.vectors_at(pick), vectors[pick])
        blocks = list(store.vector_blocks(pick, block_rows=block_rows))
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), vectors[pick])
        assert [off for off, _ in blocks] == list(range(0, len(pick), block_rows))


operations = st.lists(
    st.tuples(st.sampled_from(["append", "remove"]), st.lists(st.integers(0, 25), min_size=1, max_size=12, unique=True),
              st.sets(st.integers(0, 25), max_size=3)),
    min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, block_rows=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_blocks_equal_the_materialised_view(tmp_path_factory, ops, block_rows, seed) -> None:
    """Segments with superseded rows, skipped files and tombstones: every block read equals the
    old materialised view, before and after compaction (and a partial merge of the newest)."""
    rng = np.random.default_rng(seed)
    store = Store.create(tmp_path_factory.mktemp("s") / "store", SIG)
    for i, (op, names, bad) in enumerate(ops):
        paths = [f"/p{n:02d}" for n in names]
        if op == "append":
            _append(store, paths, rng, {f"/p{n:02d}" for n in bad}, tag=str(i))
        else:
            store.remove(paths)
    if not any(op == "append" for op, _, _ in ops):
        return
    _assert_views_equal(store, block_rows, rng)
    before = _old_view(store.root)
    ids = store.segment_ids()
    if len(ids) > 2:  # merge the newest segments only: tombstones must still hide older rows
        store._merge(ids[1:])
        assert store.segment_ids()[0] == ids[0] and len(store.segment_ids()) == 2
        _assert_views_equal(store, block_rows, rng)
        assert _old_view(store.root)[0]["path"].tolist() == before[0]["path"].tolist()
    store.compact()
    assert len(store.segment_ids()) <= 1
    _assert_views_equal(store, block_rows, rng)
    np.testing.assert_array_equal(_old_view(store.root)[1], before[1])


def test_bad_rows_are_refused(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    _append(store, ["/a", "/b"], np.random.default_rng(0))
    for rows in ([2], [-1], np.array([[0]]), np.array([0.5])):
        with pytest.raises(ParameterError, match="^rows "):
            store.vectors_at(rows)
    with pytest.raises(ParameterError, match="^block_rows "):
        next(store.vector_blocks(block_rows=0))
    assert store.vectors_at([]).shape == (0, DIM)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_float16_store_round_trips_within_float16_precision(tmp_path_factory, n, seed) -> None:
    root = tmp_path_factory.mktemp("f16") / "store"
    store = Store.create(root, SIG, dtype="float16")
    v = l2_normalize(np.random.default_rng(seed).normal(size=(n, DIM)))
    paths = [f"/w{i:03d}" for i in range(n)]
    store.append_segment(_rows(paths), v)
    opened = Store.open(root)
    assert opened.dtype == "float16" and opened.meta["dtype"] == "float16" == opened.summary()["dtype"]
    assert np.load(root / "segments" / "seg-000001.npy", mmap_mode="r").dtype == np.float16
    got = opened.vectors_at(np.arange(n))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, v, atol=2.0 ** -11, rtol=0)  # float16: 11 significant bits
    np.testing.assert_array_equal(got, v.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(opened.vectors, got)


def test_dtype_is_chosen_at_creation(tmp_path: Path) -> None:
    Store.create(tmp_path / "s", SIG, dtype="float16")
    assert Store.create(tmp_path / "s", SIG).dtype == "float16"  # unset: the store's own
    with pytest.raises(StoreError, match=r"s: store keeps its vectors as float16.*dtype 'float32'"):
        Store.create(tmp_path / "s", SIG, dtype="float32")
    with pytest.raises(ParameterError, match="^dtype must be one of float32, float16"):
        Store.create(tmp_path / "t", SIG, dtype="float64")
    assert not (tmp_path / "t").exists()
    assert Store.create(tmp_path / "u", SIG).dtype == "float32"


def test_summary_and_len_never_read_vector_files(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    rng = np.random.default_rng(1)
    _append(store, ["/a", "/b", "/c"], rng, {"/c"})
    _append(store, ["/b", "/d"], rng)
    store.remove(["/a"])
    expected = Store.open(store.root).summary()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for f in store.segment_dir.glob("*.npy"):
        shutil.move(f, hidden / f.name)
    opened = Store.open(store.root)
    assert opened.summary() == expected
    assert expected["count"] == len(opened) == 2 and expected["skipped"] == 1
    assert opened.items["path"].tolist() == ["/b", "/d"]
    assert opened.index_of(["/d", "/a", "/c"]) == [1, None, None]
    with pytest.raises(FileNotFoundError):
        opened.vectors_at([0])


def _mtimes(store: Store) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(store.segment_dir.iterdir())}


def test_small_append_leaves_the_big_segment_alone(tmp_path: Path) -> None:
    """1 % new works: one new segment, the rest untouched; many dead rows: one rewrite."""
    rng = np.random.default_rng(2)
    store = Store.create(tmp_path / "s", SIG)
    _append(store, [f"/old/{i:05d}" for i in range(2000)], rng)
    before = _mtimes(store)
    _append(store, [f"/new/{i:03d}" for i in range(20)], rng)
    rev = store.revision
    assert store.compact_if_worth_it(small_rows=1000) == []
    assert store.revision == rev and len(store) == 2020
    after = _mtimes(store)
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 2
    # a quarter of the rows re-embedded: superseded rows pass the bound, one rewrite
    _append(store, [f"/old/{i:05d}" for i in range(700)], rng, tag="x")
    assert store.compact_if_worth_it(small_rows=1000) == [1, 2, 3]
    assert store.segment_ids() == [4] and len(store) == 2020


def test_many_small_segments_merge_newest_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = Store.create(tmp_path / "s", SIG)
    _append(store, [f"/a/{i:04d}" for i in range(500)], rng)
    for k in range(6):
        _append(store, [f"/b/{k}/{i}" for i in range(5)], rng)
    big = _mtimes(store)["seg-000001.npy"]
    _, vectors = _old_view(store.root)
    assert store.compaction_plan(small_rows=0, max_segments=8) == []
    assert store.compact_if_worth_it(small_rows=0, max_segments=4) == [2, 3, 4, 5, 6, 7]
    assert store.segment_ids() == [1, 8] and _mtimes(store)["seg-000001.npy"] == big
    np.testing.assert_array_equal(store.vectors, vectors)


def test_equal_labels_are_not_rewritten(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", SIG)
    _append(store, ["/a", "/b"], np.random.default_rng(4))
    labels = pd.DataFrame({"path": ["/a", "/b"], "style": ["x", None]})
    store.set_labels(labels)
    stamp = store.labels_path.stat().st_mtime_ns
    store.set_labels(labels.copy())
    assert store.labels_path.stat().st_mtime_ns == stamp
    style = store.item_columns(["style", "sha256"])["style"]
    assert style[0] == "x" and pd.isna(style[1])
    store.set_labels(pd.DataFrame({"path": ["/a"], "style": ["y"]}))
    assert store.labels_path.stat().st_mtime_ns != stamp
    assert store.items["style"][0] == "y" and pd.isna(store.items["style"][1])


def test_rerun_writes_nothing_and_reuse_survives_flushes(tmp_path: Path, lite0_encoder) -> None:
    """A re-run over unchanged files leaves every segment and the revision alone; a copied file
    embedded after other segments were committed gets its original's vector."""
    root = tmp_path / "g"
    write_gallery(root, 3)
    out = tmp_path / "store"
    kw = {"encoder": lite0_encoder, "workers": 0, "progress": False, "flush_every": 1, "batch_size": 1}
    embed_folders([root], out, **kw)
    store = Store.open(out)
    rev, stamps = store.revision, _mtimes(store)
    report = embed_folders([root], out, **kw)
    assert report.unchanged == 3 and report.embedded == 0
    assert Store.open(out).revision == rev and _mtimes(Store.open(out)) == stamps
    # "a_new" sorts before everything: committed first, it shifts every item row by one
    painting(99).save(root / "a_new.jpg", "JPEG", quality=90)
    shutil.copy(root / "work_0002.jpg", root / "z_copy.jpg")
    report = embed_folders([root], out, **kw)
    assert report.embedded == 1 and report.reused == 1
    store = Store.open(out)
    copy, orig = store.index_of([str(root / "z_copy.jpg"), str(root / "work_0002.jpg")])
    np.testing.assert_array_equal(store.vectors_at([copy]), store.vectors_at([orig]))


def test_disjoint_segments_open_without_reading_paths(tmp_path: Path) -> None:
    """Segments of disjoint path ranges (written in any order) are laid out from their `row`
    column and Parquet statistics; the views still equal the old materialised ones."""
    rng = np.random.default_rng(5)
    store = Store.create(tmp_path / "s", SIG)
    _append(store, [f"/m/{i:03d}" for i in (5, 1, 3)], rng, {"/m/003"})
    _append(store, [f"/a/{i:03d}" for i in range(4)], rng)
    _append(store, ["/z/1"], rng)
    opened = Store.open(store.root)
    assert len(opened) == 7 and opened._layout.paths is None  # no path read to count
    assert opened.summary()["skipped_files"] == [{"path": "/m/003", "reason": "not an image"}]
    _assert_views_equal(opened, 3, rng)
    assert opened.index_of(["/m/005", "/a/000"]) == [5, 0]
    opened.remove(["/a/002"])  # a tombstone overlaps /a/: the paths are read and compared again
    _assert_views_equal(opened, 3, rng)
    assert Store.open(store.root)._layout.paths is not None and len(opened) == 6


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_streaming_blocks_holds_about_one_block(tmp_path: Path) -> None:
    """Reading every vector block by block keeps the pages read out of resident memory: the
    peak grows by far less than the 64 MB of vectors streamed."""
    from tests.helpers_memory import can_reset_peak_rss

    if not can_reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS")
    sig = ModelSignature(model="m", fingerprint="abc", preprocess={}, dim=256)
    store = Store.create(tmp_path / "s", sig)
    rng = np.random.default_rng(6)
    for s in range(4):
        paths = [f"/w/{s}/{i:06d}" for i in range(16_384)]
        store.append_segment(_rows(paths), rng.standard_normal((len(paths), 256), dtype=np.float32))
    opened = Store.open(store.root)
    len(opened)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_mb()
    total = 0.0
    for _, block in opened.vector_blocks(block_rows=2048):  # 2 MB blocks
        total += float(block[:, 0].sum())
    assert np.isfinite(total)
    assert _peak_rss_mb() - base < 24  # the whole stream: 64 MB


def test_embed_dtype_float16_from_the_cli(tmp_path: Path, capsys, caplog) -> None:
    from artenc.cli import main

    write_gallery(tmp_path / "g", 2)
    out = tmp_path / "store"
    argv = ["embed", str(tmp_path / "g"), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--dtype", "float16"]) == 0
    store = Store.open(out)
    assert store.dtype == "float16" and store.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(store.vectors, axis=1), 1.0, atol=2e-3)
    capsys.readouterr()
    assert main([*argv, "--dtype", "float32"]) == 2
    assert f"{out}: store keeps its vectors as float16" in caplog.text and "refusing dtype 'float32'" in caplog.text
    assert main(["info", str(out)]) == 0 and "(float16, L2-normalised)" in capsys.readouterr().out


def test_summary_counts_from_the_footers_when_they_settle_them(tmp_path: Path) -> None:
    """Disjoint sorted segments without skipped files or tombstones are counted from their
    Parquet footers alone (no column read, no layout built); a skipped file, a tombstone or
    overlapping segments need the `row` column, with the same counts."""
    rng = np.random.default_rng(9)
    store = Store.create(tmp_path / "s", SIG)
    assert Store.open(store.root).summary()["count"] == 0  # no segment yet
    _append(store, [f"/b/{i}" for i in (3, 1, 2)], rng)
    _append(store, ["/a/1", "/a/0"], rng)
    opened = Store.open(store.root)
    assert opened._footer_count() == 5
    doc = opened.summary()
    assert doc["count"] == 5 and doc["skipped"] == 0 and "_layout" not in opened.__dict__
    assert doc == Store.open(store.root).reload().summary() == {**doc, "count": len(Store.open(store.root))}
    _append(store, ["/c/0", "/c/1"], rng, {"/c/1"})  # a skipped file: row -1 in the statistics
    opened = Store.open(store.root)
    assert opened._footer_count() is None
    assert opened.summary()["count"] == 6 and opened.summary()["skipped_files"] == [
        {"path": "/c/1", "reason": "not an image"}]
    store = Store.create(tmp_path / "t", SIG)
    _append(store, ["/a", "/b"], rng)
    _append(store, ["/b", "/c"], rng)  # overlapping paths: /b superseded
    opened = Store.open(store.root)
    assert opened._footer_count() is None and opened.summary()["count"] == 3


def test_exact_search_streams_a_store_like_its_matrix(tmp_path: Path) -> None:
    """`top_k` and `range_search` given the Store read its vectors block by block and return
    what they return for the materialised matrix (ties by smaller row, own row excluded)."""
    from artenc.search import range_search, top_k

    rng = np.random.default_rng(11)
    store = Store.create(tmp_path / "s", SIG)
    _append(store, [f"/w/{i:03d}" for i in range(40)], rng, {"/w/007"})
    _append(store, [f"/w/{i:03d}" for i in range(30, 70)], rng)  # supersedes 30..39
    store.append_segment(_rows(["/x/0", "/x/1"]), np.tile(store.vectors_at([3]), (2, 1)))  # exact ties
    opened = Store.open(store.root)
    matrix = opened.vectors
    queries = matrix[[0, 3, 50]]
    for block in (1, 7, 1000):
        got = top_k(queries, opened, 6, exclude=[0, -1, 50], matrix_block=block)
        want = top_k(queries, matrix, 6, exclude=[0, -1, 50], matrix_block=block)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
        got_r = range_search(queries[1], opened, 0.2, limit=4, exclude=3, matrix_block=block)
        want_r = range_search(queries[1], matrix, 0.2, limit=4, exclude=3, matrix_block=block)
        assert got_r[2] == want_r[2] and got_r[1].tolist() == want_r[1].tolist()
    assert top_k(queries[1:2], opened, 3)[1][0].tolist()[:3] == sorted([3, *opened.index_of(["/x/0", "/x/1"])])


@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["similar", "-k", "3"]])
def test_a_damaged_segment_table_is_one_line_naming_it(tmp_path, caplog, command):
    from artenc.cli import main
    from tests.helpers_search import vector_store

    store = vector_store(tmp_path / "s", l2_normalize(np.random.default_rng(0).standard_normal((20, 8))))
    seg = sorted(store.segment_dir.glob("*.parquet"))[0]
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])  # truncated
    args = [command[0], str(store.root), *([str(tmp_path / "s" / "img_00001.jpg")] if command[0] == "similar" else []),
            *command[1:]]
    assert main(args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(seg) in errors[0] and "\n" not in errors[0] and "damaged" in errors[0]
