"""Index kinds, exactness of re-scoring, persistence and staleness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artenc.cli import main
from artenc.errors import UsageError
from artenc.index import (
    AUTO_EXACT_MAX,
    StaleIndexError,
    as_unit_matrix,
    build_index,
    choose_kind,
    index_for_store,
    load_index,
)
from artenc.store import BASE_COLUMNS
from tests.helpers_search import clustered, vector_store


@pytest.fixture(scope="module")
def data():
    x, _ = clustered(20, 50, dim=32, spread=0.8, seed=1)
    return x


def brute_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.sort(q @ x.T, axis=1)[:, ::-1][:, :k]


def test_flat_matches_brute_force(data):
    sims, ids = build_index(data, "flat").search(data[:50], 10)
    np.testing.assert_allclose(sims, brute_topk(data, data[:50], 10), atol=1e-5)  # ties allowed
    assert (ids[:, 0] == np.arange(50)).all()


@pytest.mark.parametrize("kind,min_recall", [("hnsw", 0.9), ("ivfpq", 0.5), ("lsh", 0.3)])
def test_approximate_kinds_return_exact_cosines(data, kind, min_recall):
    vindex = build_index(data, kind)
    sims, ids = vindex.search(data[:100], 10)
    assert vindex.kind == kind
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", data[:100], data[ids]), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # sorted, most similar first
    truth = np.argsort(-(data[:100] @ data.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall >= min_recall


def test_k_larger_than_store_pads_with_minus_one(data):
    sims, ids = build_index(data[:5], "flat").search(data[:2], 8)
    assert (ids[:, 5:] == -1).all() and np.isneginf(sims[:, 5:]).all()


def test_auto_kind_thresholds():
    assert choose_kind("auto", AUTO_EXACT_MAX) == "flat"
    assert choose_kind("auto", AUTO_EXACT_MAX + 1) == "hnsw"
    with pytest.raises(UsageError, match="unknown index kind"):
        choose_kind("annoy", 10)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros(4, np.float32), "2-D"),
    (np.zeros((3, 4), np.int64), "floating"),
    (np.full((3, 4), np.nan, np.float32), "NaN"),
])
def test_input_checks(bad, msg):
    with pytest.raises(UsageError, match=msg):
        as_unit_matrix(bad)


def test_saved_index_is_used_then_refused_when_stale(tmp_path, data, capsys, caplog):
    store = vector_store(tmp_path, data[:200])
    assert main(["index", str(store.root), "--kind", "hnsw", "--json"]) == 0
    assert '"kind": "hnsw"' in capsys.readouterr().out
    assert load_index(store).kind == "hnsw"
    assert index_for_store(store).kind == "hnsw"
    # the store changes: one more vector
    rows = pd.DataFrame([{"path": str(tmp_path / "new.jpg"), "relpath": "new.jpg", "sha256": "f" * 64,
                          "size": 1, "mtime_ns": 0, "width": 1, "height": 1, "error": None, "row": 0}],
                        columns=BASE_COLUMNS)
    store.append_segment(rows, data[200:201])
    store.reload()
    with pytest.raises(StaleIndexError, match="rebuild it"):
        load_index(store)
    assert main(["similar", str(store.root), str(tmp_path / "img_00000.jpg")]) == 2
    assert "rebuild it with `artenc index" in caplog.text
    assert main(["index", str(store.root)]) == 0
    assert load_index(store.reload()).ntotal == 201


def test_index_of_empty_store_is_refused(tmp_path, caplog):
    store = vector_store(tmp_path, np.zeros((0, 8), np.float32))
    assert main(["index", str(store.root)]) == 2
    assert "empty" in caplog.text
