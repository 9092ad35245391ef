"""The IVF-PQ path for millions of works, at small N (issue 13): recall with exact re-ranking,
incremental adds, memory-mapped reload, streamed duplicate pairs and clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artenc.cells import cell_pairs
from artenc.cli import main
from artenc.cluster import cluster_store, cluster_vectors
from artenc.dedup import candidate_pairs, find_duplicates
from artenc.index import (
    build_store_index,
    load_index,
    refresh_index,
    save_index,
    store_rows,
)
from artenc.search import top_k
from artenc.store import BASE_COLUMNS, l2_normalize
from tests.helpers_search import vector_store

N, DIM, CLUSTERS, PLANTED = 20_000, 64, 50, 200


def planted_data(seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """N clustered unit vectors (cosine to their centre ~0.8) with PLANTED near-copies
    (cosine ~0.99 to their source; other pairs stay below ~0.85)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((CLUSTERS, DIM)))
    noise = l2_normalize(rng.standard_normal((N, DIM)))
    x = 0.8 * centres[rng.integers(0, CLUSTERS, N)] + 0.6 * noise
    src, dst = rng.choice(N, size=(2, PLANTED), replace=False)
    x[dst] = x[src] + 0.1 * l2_normalize(rng.standard_normal((PLANTED, DIM)))
    x = l2_normalize(x)
    return x, {(int(min(a, b)), int(max(a, b))) for a, b in zip(src, dst, strict=True)}


@pytest.fixture(scope="module")
def data():
    return planted_data()


@pytest.fixture(scope="module")
def built(tmp_path_factory, data):
    store = vector_store(tmp_path_factory.mktemp("ivf"), data[0])
    vindex = build_store_index(store, "ivfpq")
    save_index(store, vindex)
    return store, vindex


def recall_at_10(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))


def test_ivfpq_recall_against_exact_search(built, data):
    store, vindex = built
    x = data[0]
    queries = l2_normalize(x[:300] + 0.3 * np.random.default_rng(1).standard_normal((300, DIM)) / np.sqrt(DIM))
    sims, ids = vindex.search(queries, 10)
    _, truth = top_k(queries, x, 10)
    assert recall_at_10(ids, truth) >= 0.95
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", queries, x[ids]), atol=1e-5)  # exact cosines
    assert vindex.index.ntotal == N and vindex.params["nlist"] > 1 and vindex.params["m"] < DIM


def test_memory_mapped_reload_gives_the_same_results(built, data):
    store, vindex = built
    queries = data[0][1000:1100]
    loaded = load_index(store.reload())
    assert loaded.kind == "ivfpq" and loaded.read_only  # inverted lists mapped from the file
    for a, b in zip(vindex.search(queries, 10), loaded.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_streamed_cell_pairs_equal_the_exact_pairs(built, data):
    store, _ = built
    pairs = cell_pairs(store.reload(), 0.95, progress=False)
    assert "_vectors" not in store.__dict__  # read by blocks and rows, never whole
    found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    exact = candidate_pairs(data[0], 0.95, exact=True)
    assert data[1] <= found
    assert found == set(zip(exact.i.tolist(), exact.j.tolist(), strict=True))
    np.testing.assert_allclose(pairs.sim, np.einsum("nd,nd->n", data[0][pairs.i], data[0][pairs.j]), atol=1e-5)


def test_streamed_dedup_gives_the_exact_groups(built, data):
    store, _ = built
    streamed = find_duplicates(store.reload(), 0.95, verify=False, exact=False)
    assert "_vectors" not in store.__dict__
    exact = find_duplicates(store, 0.95, verify=False, exact=True)
    assert [g.rows for g in streamed.groups] == [g.rows for g in exact.groups]
    assert len(streamed.groups) >= PLANTED - 5  # a copy of a copy may join a group of three


def test_incremental_add_finds_new_works_without_a_rebuild(tmp_path, data):
    x = data[0]
    store = vector_store(tmp_path, x[:10_000])
    vindex = build_store_index(store, "ivfpq")
    save_index(store, vindex)
    centroids = vindex.index.quantizer.reconstruct_n(0, vindex.params["nlist"]).copy()
    # 1% new works appended as a new segment (paths sort between the old ones: item rows shift)
    new = l2_normalize(x[10_000:10_100] + 0.01)
    paths = [str(tmp_path / f"img_{i:05d}b.jpg") for i in range(100)]
    rows = pd.DataFrame({"path": paths, "relpath": paths, "sha256": [f"{i:063x}b" for i in range(100)],
                         "size": 1, "mtime_ns": 0, "width": 1, "height": 1, "error": None,
                         "row": np.arange(100)}, columns=BASE_COLUMNS)
    store.append_segment(rows, new)
    store.reload()
    assert main(["index", str(store.root), "--json"]) == 0
    updated = load_index(store.reload())
    assert updated.index.ntotal == 10_100  # grown, not rebuilt:
    np.testing.assert_array_equal(updated.index.quantizer.reconstruct_n(0, vindex.params["nlist"]), centroids)
    sims, ids = updated.search(new, 1)
    want = np.asarray(store.index_of(paths))
    assert (ids[:, 0] == want).all() and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    old_q = store.vectors_at(store.index_of([str(tmp_path / "img_00007.jpg")]))
    assert updated.search(old_q, 1)[1][0, 0] == store.index_of([str(tmp_path / "img_00007.jpg")])[0]
    # a re-embedded (superseded) work: its old row is masked, its new vector found
    path = str(tmp_path / "img_00003.jpg")
    rows = pd.DataFrame([{"path": path, "relpath": "img_00003.jpg", "sha256": "e" * 64, "size": 1,
                          "mtime_ns": 1, "width": 1, "height": 1, "error": None, "row": 0}], columns=BASE_COLUMNS)
    store.append_segment(rows, x[15_000:15_001])
    lazily = load_index(store.reload())  # extended in memory on load
    assert lazily.index.ntotal == 10_101 and lazily.ntotal == 10_100
    row = store.index_of([path])[0]
    sims, ids = lazily.search(x[15_000:15_001], 2)
    assert ids[0, 0] == row
    _, ids = lazily.search(x[3:4], 10)
    assert row not in ids[0] or np.allclose(store.vectors_at([row])[0], x[15_000])  # old vector gone
    assert len(np.unique(store_rows(store))) == len(store)


def test_refresh_rebuilds_after_compaction(tmp_path, data):
    store = vector_store(tmp_path, data[0][:3000])
    save_index(store, build_store_index(store, "ivfpq"))
    store.remove([str(tmp_path / "img_00001.jpg")])
    store.compact()
    vindex = refresh_index(store.reload(), "auto")
    assert vindex.kind == "ivfpq" and vindex.index.ntotal == 2999


def test_streamed_kmedoids_equals_the_in_memory_result(tmp_path, data):
    x = data[0][:6000]
    store = vector_store(tmp_path, x)
    streamed = cluster_store(store, "auto", k_range="2:12:3", sample_size=1500, seed=3).clustering
    same = np.arange(len(x))  # distinct sha256 per row in vector_store
    whole = cluster_vectors(x, "auto", k_range="2:12:3", sample_size=1500, seed=3, same=same)
    assert streamed.k == whole.k
    np.testing.assert_array_equal(streamed.medoids, whole.medoids)
    np.testing.assert_array_equal(streamed.labels, whole.labels)
    np.testing.assert_allclose(streamed.distances, whole.distances, atol=1e-6)
