"""Retrieval metrics on hand-made examples with known answers; the evaluate/compare CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from artenc.evaluate import (
    evaluate_arrays,
    knn_vote,
    map_at_k,
    relevance,
    retrieval_metrics,
    topk_neighbors,
)


def _angles(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_topk_exact_and_leave_one_out():
    x = _angles([0, 10, 30, 100])
    sims, idx = topk_neighbors(x, x, 2)
    assert idx.tolist() == [[0, 1], [1, 0], [2, 1], [3, 2]]
    ids = np.arange(4)
    sims, idx = topk_neighbors(x, x, 2, ids, ids)
    assert idx.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert sims[0, 0] == pytest.approx(np.cos(np.deg2rad(10)), rel=1e-6)
    # fewer candidates than k: padded with -1 / -inf
    sims, idx = topk_neighbors(x[:1], x[:2], 3, ids[:1], ids[:2])
    assert idx.tolist() == [[1, -1, -1]] and np.isneginf(sims[0, 1:]).all()


def test_topk_rejects_bad_input():
    with pytest.raises(ValueError, match="float"):
        topk_neighbors(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2), np.float32), 1)
    with pytest.raises(ValueError, match="dim"):
        topk_neighbors(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32), 1)


def test_map_at_k_known_values():
    # relevant at ranks 1 and 3 of k = 3, R = 2: AP = (1/1 + 2/3) / 2
    rel = np.array([[True, False, True]])
    assert map_at_k(rel, np.array([2])) == pytest.approx((1 + 2 / 3) / 2)
    # R = 5 > k: denominator k = 3
    assert map_at_k(rel, np.array([5])) == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_k(np.array([[False, False]]), np.array([0])) == 0.0


def test_knn_vote_majority_then_similarity():
    assert knn_vote(["a", "b", "b"], [0.9, 0.5, 0.4])[:2] == ("b", pytest.approx(2 / 3))
    # tie 1-1: larger summed similarity wins
    assert knn_vote(["a", "b"], [0.9, 0.5])[0] == "a"


def test_retrieval_metrics_leave_one_out_known_answer():
    # two tight clusters of 3 (labels a, b) + one 'a' inside cluster b
    x = _angles([0, 5, 10, 90, 95, 100, 97])
    y = np.array(["a", "a", "a", "b", "b", "b", "a"], dtype=object)
    ids = np.arange(7)
    m = retrieval_metrics(x, y, x, y, k=2, query_ids=ids, gallery_ids=ids, linear_probe=False)
    # neighbours (leave-one-out, k=2): 0->1,2 ; 1->0,2 ; 2->1,0 ; 3->4,6 ; 4->6,5 ; 5->6,4 ; 6->4,5
    rel = [[1, 1], [1, 1], [1, 1], [1, 0], [0, 1], [0, 1], [0, 0]]
    assert m.p_at_k == pytest.approx(np.mean(rel))
    assert m.r_at_k == pytest.approx(6 / 7)
    # kNN: queries 0-2 right (a,a); 3: b vs a tie 1-1 -> larger similarity (4 at 5 deg) = b right;
    # 4: a(6, 2 deg) vs b(5) -> tie, a closer -> wrong; 5: tie, a closer (3 deg) -> wrong; 6: b,b -> wrong
    assert m.knn_accuracy == pytest.approx(4 / 7)
    assert m.n_queries == 7 and m.linear_probe_accuracy is None


def test_relevance_ignores_missing_slots():
    rel = relevance(np.array(["a"], dtype=object), np.array(["a", "b"], dtype=object), np.array([[0, -1]]))
    assert rel.tolist() == [[True, False]]


def test_evaluate_arrays_splits_and_missing_labels():
    rng = np.random.default_rng(0)
    centers = _angles([0, 120, 240])
    y = np.repeat(["a", "b", "c"], 20)
    x = centers[np.repeat([0, 1, 2], 20)] + 0.05 * rng.normal(size=(60, 2)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    items = pd.DataFrame({"style": y, "split": np.tile(["dev", "holdout"], 30)})
    items.loc[0, "style"] = ""  # unlabelled: neither query nor gallery
    r = evaluate_arrays(x, items, ["style"], k=5, query_split="holdout", gallery_split="dev").to_dict()
    s = r["fields"]["style"]
    assert s["p_at_k"] == 1.0 and s["knn_accuracy"] == 1.0 and s["linear_probe_accuracy"] == 1.0
    assert s["n_queries"] == 30 and s["n_gallery"] == 29 and r["leave_one_out"] is False
    loo = evaluate_arrays(x, items, ["style"], k=5, query_split="holdout").to_dict()
    assert loo["leave_one_out"] and loo["fields"]["style"]["n_gallery"] == 30
    assert loo["fields"]["style"]["map_at_k"] == 1.0


@pytest.fixture
def store(tmp_path):
    from artenc.store import ModelSignature, Store

    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(12, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    s = Store.create(tmp_path / "s", ModelSignature("toy", "fp", {"size": 1}, 4))
    paths = [f"/x/{i}.jpg" for i in range(12)]
    rows = pd.DataFrame({"path": paths, "relpath": paths, "sha256": paths, "size": 1, "mtime_ns": 1,
                         "width": 1, "height": 1, "error": None, "row": np.arange(12)})
    s.append_segment(rows, vecs)
    s.set_labels(pd.DataFrame({"path": paths, "style": list("abc") * 4, "split": ["dev"] * 6 + ["holdout"] * 6}))
    return s.root


def test_cli_evaluate_and_compare_json(store, capsys):
    from artenc.cli import main

    assert main(["evaluate", str(store), "--field", "style", "-k", "3", "--query-split", "holdout",
                 "--gallery-split", "dev", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["fields"]["style"]) >= {"p_at_k", "map_at_k", "knn_accuracy", "linear_probe_accuracy"}
    assert doc["k"] == 3 and doc["n_queries"] == 6
    assert main(["compare", str(store), str(store), "--no-linear-probe"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| store |") and len(table) == 4


def test_cli_evaluate_usage_errors(store, caplog):
    from artenc.cli import main

    assert main(["evaluate", str(store), "--field", "school"]) == 2
    assert main(["evaluate", str(store), "--query-split", "test"]) == 2
    assert "no item has split='test'" in caplog.text
