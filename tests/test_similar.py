"""similar and pair on a real (generated) store: stored and new queries, grids, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from artenc.cli import main
from tests.helpers_search import image_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, lite0_encoder):
    return image_store(tmp_path_factory, lite0_encoder)


def test_stored_query_excludes_itself(store, capsys):
    query = store.items["path"][0]
    assert main(["similar", str(store.root), query, "-k", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (res,) = doc["results"]
    assert res["query"] == query and res["in_store"] is True
    assert len(res["neighbors"]) == 4
    assert query not in [nb["path"] for nb in res["neighbors"]]
    sims = [nb["similarity"] for nb in res["neighbors"]]
    assert sims == sorted(sims, reverse=True)
    assert set(res["neighbors"][0]["labels"]) == {"split", "style"}
    row = store.index_of([res["neighbors"][0]["path"]])[0]
    assert sims[0] == pytest.approx(float(store.vectors[0] @ store.vectors[row]), abs=1e-5)


def test_relative_path_and_new_file_queries(store, tmp_path, capsys):
    original = store.items["path"][store.items["relpath"] == "p03.png"].item()
    copy = tmp_path / "outside.png"
    Image.open(original).save(copy)  # same pixels, not in the store
    grid = tmp_path / "grid.png"
    assert main(["similar", str(store.root), "p03.png", str(copy), "-k", "3", "--json",
                 "--grid", str(grid)]) == 0
    doc = json.loads(capsys.readouterr().out)
    stored, new = doc["results"]
    assert stored["query"] == original
    assert new["in_store"] is False
    assert new["neighbors"][0]["path"] == original  # embedded with the store's own model
    assert new["neighbors"][0]["similarity"] > 0.999
    assert Image.open(grid).size[0] > 300


def test_pair(store, tmp_path, capsys):
    a, b = store.items["path"][0], store.items["path"][1]
    out = tmp_path / "pair.png"
    assert main(["pair", str(store.root), a, b, "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["similarity"] == pytest.approx(float(np.dot(store.vectors[0], store.vectors[1])), abs=1e-5)
    assert out.stat().st_size > 0


@pytest.mark.parametrize("args,message", [
    (["missing.jpg"], "not in the store and no such image file"),
    (["p00.png", "-k", "0"], "-k must be >= 1"),
])
def test_bad_queries_exit_2(store, caplog, args, message):
    assert main(["similar", str(store.root), *args]) == 2
    assert message in caplog.text


def test_unreadable_query_file_exit_2(store, tmp_path, caplog):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["similar", str(store.root), str(bad)]) == 2
    assert "cannot use as a query" in caplog.text


# ---------------------------------------------------------------- issue 15: --radius


from artenc.collection import Collection  # noqa: E402
from artenc.errors import ParameterError  # noqa: E402
from artenc.search import SIM_TOLERANCE, range_search  # noqa: E402
from tests.helpers_search import clustered, vector_store  # noqa: E402


def reference_within(matrix: np.ndarray, q: np.ndarray, radius: float, exclude: int | None = None) -> list[int]:
    """Rows with cosine >= radius (float64 products), most similar first, ties by row."""
    sims = matrix.astype(np.float64) @ q.astype(np.float64)
    rows = [i for i in np.flatnonzero(sims >= radius - SIM_TOLERANCE) if i != exclude]
    return sorted(rows, key=lambda i: (-sims[i], i))


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_range_search_matches_numpy(block):
    x, _ = clustered(4, 25, dim=16, spread=0.5, seed=3)
    q = x[5]
    sims_all = np.sort(x @ q)[::-1]
    for radius in [-1.0, float((sims_all[10] + sims_all[11]) / 2), float((sims_all[40] + sims_all[41]) / 2), 0.9999]:
        sims, ids, total = range_search(q, x, radius, exclude=5, matrix_block=block)
        expect = reference_within(x, q, radius, exclude=5)
        assert ids.tolist() == expect and total == len(expect)
        assert np.allclose(sims, x[ids] @ q, atol=1e-6) and np.all(np.diff(sims) <= 0)
    sims, ids, total = range_search(q, x, -1.0, limit=7, matrix_block=block)
    assert ids.tolist() == reference_within(x, q, -1.0)[:7] and total == 100 and sims[0] == pytest.approx(1.0, abs=1e-6)


def test_range_search_ties_and_bad_input():
    x = np.tile(np.eye(4, dtype=np.float32)[:1], (6, 1))  # six identical rows
    sims, ids, total = range_search(x[0], x, 1.0, limit=3, matrix_block=2)
    assert ids.tolist() == [0, 1, 2] and total == 6 and np.all(sims == 1.0)
    with pytest.raises(ParameterError, match="^threshold must be a cosine similarity"):
        range_search(x[0], x, 1.5)
    with pytest.raises(ParameterError, match="^limit must be >= 1"):
        range_search(x[0], x, 0.5, limit=0)
    with pytest.raises(ParameterError, match="^query must have dim 4"):
        range_search(np.ones(3, np.float32), x, 0.5)


def test_radius_one_returns_exactly_the_byte_identical_copies(tmp_path):
    x, _ = clustered(3, 6, dim=8, seed=2)
    x = np.vstack([x, np.repeat(x[4:5], 3, axis=0)])  # rows 18, 19, 20 copy row 4
    c = Collection(vector_store(tmp_path, x))
    hit = c.similar(c.paths[4], radius=1.0)[0]
    assert sorted(hit.rows.tolist()) == [18, 19, 20] and hit.within == 3 and not hit.truncated
    assert all(n.similarity == 1.0 for n in hit.neighbors)
    assert c.similar(c.paths[18], radius=1.0)[0].rows.tolist() == [4, 19, 20]  # itself left out, by row


def test_radius_returns_every_work_above_r(store, capsys, caplog):
    x = np.asarray(store.vectors)
    query = store.items["path"][2]
    sims_all = np.sort(x @ x[2])[::-1]
    radius = round(float((sims_all[5] + sims_all[6]) / 2), 6)  # 5 works above it, itself excluded
    assert main(["similar", str(store.root), query, "--radius", str(radius), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"results", "radius", "limit"} and doc["radius"] == radius and doc["limit"] == 1000
    (res,) = doc["results"]
    assert set(res) == {"query", "in_store", "neighbors", "within"}
    expect = reference_within(x, x[2], radius, exclude=2)
    assert [store.index_of([n["path"]])[0] for n in res["neighbors"]] == expect and res["within"] == len(expect) == 5
    assert all(n["similarity"] >= radius for n in res["neighbors"])
    caplog.clear()
    assert main(["similar", str(store.root), query, "--radius", str(radius), "--limit", "2", "--json"]) == 0
    cut = json.loads(capsys.readouterr().out)["results"][0]
    assert cut["neighbors"] == res["neighbors"][:2] and cut["within"] == 5
    assert "5 works have cosine similarity" in caplog.text and "raise --limit" in caplog.text


def test_top_k_json_has_no_radius_keys(store, capsys):
    assert main(["similar", str(store.root), store.items["path"][0], "-k", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["results"] and list(doc["results"][0]) == ["query", "in_store", "neighbors"]


@pytest.mark.parametrize("args,message", [
    (["--radius", "1.5"], "--radius must be a cosine similarity in [-1, 1], got 1.5"),
    (["--radius", "0.5", "--verify"], "--radius cannot be combined with verify"),
    (["--radius", "0.5", "--limit", "0"], "--limit must be >= 1"),
])
def test_bad_radius_exit_2(store, caplog, args, message):
    assert main(["similar", str(store.root), "p00.png", *args]) == 2
    assert message in caplog.text



def test_without_a_saved_index_similar_searches_the_store_exactly(store, tmp_path):
    """No saved index: `Collection.similar` builds none (one call at a million works would pay
    for a whole index build) and returns the exact top k, read from the store block by block;
    a saved index is loaded once and kept."""
    from artenc.collection import Collection
    from artenc.index import build_store_index, save_index
    from artenc.search import top_k
    from artenc.store import Store

    c = Collection(Store.open(store.root))
    query = c.store.items["path"][2]
    res = c.similar(query, k=5)
    assert c._index is None
    sims, ids = top_k(c.store.vectors[[2]], c.store.vectors, 5, exclude=[2])
    assert res[0].rows.tolist() == ids[0].tolist()
    assert [n.similarity for n in res[0].neighbors] == pytest.approx(sims[0].tolist(), abs=1e-6)
    copy = tmp_path / "indexed"
    shutil.copytree(store.root, copy)
    indexed = Store.open(copy)
    save_index(indexed, build_store_index(indexed, "flat"))
    c = Collection(indexed)
    assert c.similar(query, k=5)[0].rows.tolist() == ids[0].tolist()
    assert c._index is not None and c._index.kind == "flat"
