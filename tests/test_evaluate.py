"""Retrieval metrics on hand-made examples with known answers; the evaluate/compare CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from artenc.evaluate import (
    bootstrap_intervals,
    compare_reports,
    evaluate_arrays,
    fit_linear_probe,
    knn_vote,
    linear_probe_accuracy,
    map_at_k,
    paired_bootstrap,
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


def _make_store(folder, vecs: np.ndarray, styles: list[str], splits: list[str]):
    from artenc.store import ModelSignature, Store

    n, dim = vecs.shape
    s = Store.create(folder, ModelSignature("toy", "fp", {"size": 1}, dim))
    paths = [f"/x/{i}.jpg" for i in range(n)]
    rows = pd.DataFrame({"path": paths, "relpath": paths, "sha256": paths, "size": 1, "mtime_ns": 1,
                         "width": 1, "height": 1, "error": None, "row": np.arange(n)})
    s.append_segment(rows, vecs)
    s.set_labels(pd.DataFrame({"path": paths, "style": styles, "split": splits}))
    return s.root


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(12, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return _make_store(tmp_path / "s", vecs, list("abc") * 4, ["dev"] * 6 + ["holdout"] * 6)


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


# ----- honest metrics: the probe's regularisation, intervals, warnings, significance ------

def _offset_classes(sizes: list[int], seed: int, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors near one common direction; class i is offset by 0.05 along its own
    orthogonal direction, with noise 0.01: linearly separable (the Bayes accuracy is 1), but
    only with weak regularisation, as with collapsed contrastive embeddings."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(99).normal(size=(dim, dim)))[0]
    y = np.repeat(np.arange(len(sizes)), sizes)
    x = basis[0] + 0.05 * basis[1 + y] + 0.01 * rng.normal(size=(len(y), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.array([f"c{i}" for i in y], dtype=object)


def test_linear_probe_chooses_weak_regularisation_where_a_fixed_c_underfits():
    """42 training vectors, 6 classes (one twice as large): scikit-learn's default C = 1 (the
    old fixed probe) only finds the largest class; C chosen by cross-validation on the
    training side separates the classes, on a held-out set and in nested cross-validation."""
    from sklearn.linear_model import LogisticRegression

    x, y = _offset_classes([12, 6, 6, 6, 6, 6], seed=0)
    test_x, test_y = _offset_classes([20] * 6, seed=1)
    fixed = (LogisticRegression(C=1.0, max_iter=2000).fit(x, y).predict(test_x) == test_y).mean()
    assert fixed < 0.35  # 1/6: every test vector gets the largest class
    assert fit_linear_probe(x, y).C >= 100
    assert linear_probe_accuracy(x, y, test_x, test_y) >= 0.95
    assert linear_probe_accuracy(x, y) >= 0.9  # nested: inner CV on each outer training part
    # the choice sees the gallery only: other query labels cannot change the probe's accuracy on them
    assert linear_probe_accuracy(x, y, test_x, np.roll(test_y, 20)) <= 0.05


def test_linear_probe_undefined_cases():
    x, y = _offset_classes([5, 1], seed=0)
    assert np.isnan(linear_probe_accuracy(x, y))  # a single-member class: no stratified folds
    assert np.isnan(linear_probe_accuracy(x[:5], y[:5], x, y))  # one class to learn


def test_bootstrap_intervals_known_widths_and_seeded():
    values = np.zeros((400, 3))
    values[::2, 0] = 1.0  # a fair coin: mean 0.5, standard error 0.025
    values[:, 1] = 0.3  # a constant: a zero-width interval
    values[:, 2] = np.random.default_rng(0).random(400)
    ci = bootstrap_intervals(values, n_resamples=2000, seed=0)
    assert ci.shape == (3, 2) and np.all(ci[:, 0] <= values.mean(axis=0)) and np.all(values.mean(axis=0) <= ci[:, 1])
    assert 0.08 < ci[0, 1] - ci[0, 0] < 0.12  # about 2 * 1.96 * 0.025
    assert ci[1].tolist() == pytest.approx([0.3, 0.3])
    np.testing.assert_array_equal(ci, bootstrap_intervals(values, n_resamples=2000, seed=0))
    assert not np.array_equal(ci[2], bootstrap_intervals(values, n_resamples=2000, seed=1)[2])
    with pytest.raises(ValueError, match="^n_bootstrap "):
        bootstrap_intervals(values, n_resamples=0)


def test_paired_bootstrap_finds_real_differences_only():
    rng = np.random.default_rng(0)
    same = np.zeros((50, 1))
    shifted = rng.normal(0.1, 0.05, size=(50, 1))  # every query better by about 0.1
    noise = rng.normal(0.0, 1.0, size=(50, 1)) - rng.normal(0.0, 1.0, size=(50, 1)).mean()
    noise -= noise.mean()  # mean difference exactly 0 up to rounding
    (ci, p), (ci2, p2), (_, p3) = (paired_bootstrap(d, 1000, seed=0) for d in (same, shifted, noise))
    assert p[0] == 1.0 and ci[0].tolist() == [0.0, 0.0]
    assert p2[0] < 0.01 and ci2[0, 0] > 0.05
    assert p3[0] > 0.5


def test_retrieval_metrics_intervals_and_warnings():
    # alternating labels around a circle: each point's nearest neighbour has the other label
    x = _angles(list(range(0, 360, 15)))
    y = np.array(["a", "b"] * 12, dtype=object)
    y[:4] = "a"  # a: 14 works, b: 10 -> chance (always "a") is 14/24
    ids = np.arange(len(x))
    m = retrieval_metrics(x, y, x, y, k=1, query_ids=ids, gallery_ids=ids, linear_probe=False, n_bootstrap=500)
    assert m.chance_accuracy == pytest.approx(14 / 24) and m.knn_accuracy < m.chance_accuracy
    assert m.p_at_k_ci[0] <= m.p_at_k <= m.p_at_k_ci[1] and m.knn_accuracy_ci[0] <= m.knn_accuracy
    assert any("below chance" in w for w in m.warnings) and any("only 24 queries" in w for w in m.warnings)
    assert not any("relevant gallery items" in w for w in m.warnings)
    # k = 10: the 10 b queries have 9 relevant works each, so P@k is at most (14*10 + 10*9) / 240
    small = retrieval_metrics(x, y, x, y, k=10, query_ids=ids, gallery_ids=ids, linear_probe=False)
    assert small.p_at_k_ci is None  # no bootstrap by default (training's validation)
    assert any("10 of 24 queries have fewer than k=10" in w and "at most 0.958" in w for w in small.warnings)
    tiny = retrieval_metrics(x[:4], y[:4], x[:4], y[:4], k=3, query_ids=ids[:4], gallery_ids=ids[:4],
                             linear_probe=False)
    assert any("k=3 >= gallery size - 1 (3)" in w for w in tiny.warnings)


def test_evaluate_arrays_adds_intervals_and_keeps_every_key():
    x, y = _offset_classes([20, 20, 20], seed=0)
    items = pd.DataFrame({"path": [f"/w/{i}.jpg" for i in range(60)], "style": y})
    doc = evaluate_arrays(x, items, ["style"], k=5, linear_probe=False).to_dict()
    plain = evaluate_arrays(x, items, ["style"], k=5, linear_probe=False, n_bootstrap=0).to_dict()
    s, p = doc["fields"]["style"], plain["fields"]["style"]
    for key in ("p_at_k", "map_at_k", "r_at_k", "knn_accuracy", "linear_probe_accuracy", "n_queries", "n_gallery"):
        assert s[key] == p[key]
    for key in ("p_at_k", "map_at_k", "knn_accuracy"):
        low, high = s[f"{key}_ci"]
        assert 0.0 <= low <= s[key] <= high <= 1.0 and p[f"{key}_ci"] is None
    assert s["warnings"] == [] and doc["bootstrap"] == {"resamples": 1000, "seed": 0, "confidence": 0.95}
    json.dumps(doc, allow_nan=False)


def test_compare_reports_pairs_queries_by_path():
    x, y = _offset_classes([20, 20, 20], seed=0)
    noise = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    items = pd.DataFrame({"path": [f"/w/{i}.jpg" for i in range(60)], "style": y})
    good = evaluate_arrays(x, items, ["style"], k=5, linear_probe=False)
    bad = evaluate_arrays(noise, items, ["style"], k=5, linear_probe=False)
    order = np.random.default_rng(4).permutation(60)[:50]  # another store: other order, 10 works fewer
    good_again = evaluate_arrays(x[order], items.iloc[order].reset_index(drop=True), ["style"], k=5,
                                 linear_probe=False)
    worse, itself = compare_reports([good, bad, good_again])
    assert worse.n_paired == 60 and itself.n_paired == 50
    assert worse.metrics["p_at_k"].significant and worse.metrics["p_at_k"].difference < -0.4
    assert worse.metrics["p_at_k"].ci[1] < 0 and worse.metrics["knn_accuracy"].p_value < 0.01
    # the same vectors for the same 50 works: leave-one-out among fewer works changes little, not significantly
    assert not itself.metrics["map_at_k"].significant


def test_cli_compare_marks_significant_differences(tmp_path, capsys):
    from artenc.cli import main

    x, y = _offset_classes([20, 20, 20], seed=0)
    noise = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    good = _make_store(tmp_path / "good", x, list(y), ["dev"] * 60)
    bad = _make_store(tmp_path / "bad", noise, list(y), ["dev"] * 60)
    assert main(["compare", str(good), str(bad), "--field", "style", "-k", "5", "--no-linear-probe"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first, second = lines[2], lines[3]
    assert re.search(r"\| 1\.000 \[1\.00, 1\.00\] \|", first) and "*" not in first
    assert re.search(r"\| 0\.\d{3}\* \[0\.\d{2}, 0\.\d{2}\] \|", second)
    assert lines[-1].startswith("* differs from the first store")
    assert main(["compare", str(good), str(bad), "--field", "style", "-k", "5", "--no-linear-probe", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (c,) = doc["comparisons"]
    assert c["baseline"] == str(good) and c["store"] == str(bad) and c["n_paired"] == 60
    assert c["metrics"]["p_at_k"]["significant"] and c["metrics"]["p_at_k"]["p_value"] < 0.01
    assert doc["stores"][1]["fields"]["style"]["p_at_k_ci"][1] < doc["stores"][0]["fields"]["style"]["p_at_k"]
