"""cluster: planted clusters recovered, k chosen automatically, sampling, plots, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artenc.cli import main
from artenc.cluster import (
    choose_k,
    cluster_vectors,
    cosine_distances,
    fit_kmedoids,
    kmedoids_plusplus,
)
from tests.helpers_search import clustered, vector_store


def purity(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of items whose found cluster's majority planted label is their own."""
    hits = sum(np.bincount(truth[found == c]).max() for c in np.unique(found))
    return hits / len(truth)


def test_auto_k_recovers_planted_clusters(tmp_path, capsys):
    x, truth = clustered(6, 30, dim=16, spread=0.4, seed=2)
    style = [f"s{t}" for t in truth]
    store = vector_store(tmp_path, x, labels={"style": style})
    assert main(["cluster", str(store.root), "--k", "auto", "--k-range", "2:13", "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["k"] == 6
    assert "knee" in doc["rule"] or "silhouette" in doc["rule"]
    assert [r["k"] for r in doc["sweep"]] == list(range(2, 13))
    assert {"inertia", "distortion", "silhouette", "gap", "gap_sd"} <= set(doc["sweep"][0])
    assert sorted(doc["sizes"]) == [30] * 6
    assert all(c["labels"]["style"]["purity"] == 1.0 for c in doc["clusters"])
    assert set(doc["medoids"]) <= set(store.items["path"])
    written = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"elbow.png", "silhouette.png", "medoids.png", "cluster_000.png", "cluster_005.png"} <= written


def test_sampling_assigns_every_item():
    x, truth = clustered(5, 120, dim=16, spread=0.3, seed=4)
    result = cluster_vectors(x, 5, sample_size=100)
    assert result.sample_size == 100 and len(result.labels) == 600
    assert purity(result.labels, truth) == 1.0
    assert result.sizes.sum() == 600


def test_fasterpam_never_worse_than_its_alternating_start():
    import kmedoids

    x, _ = clustered(8, 25, dim=16, spread=1.0, seed=5)
    d = cosine_distances(x)
    for k in (3, 8, 15):
        start = kmedoids_plusplus(d, k, np.random.default_rng(k))
        alt = kmedoids.alternating(d, start.astype(np.uintp))
        fit = fit_kmedoids(d, k, seed=0, init=start)
        assert fit.loss <= alt.loss + 1e-6
        assert len(set(fit.medoids.tolist())) == k


def test_choose_k_without_knee_takes_best_silhouette():
    rows = [{"k": k, "inertia": 10.0, "silhouette": s} for k, s in ((2, 0.1), (3, 0.5), (4, 0.2))]
    k, rule = choose_k(rows)
    assert k == 3 and "silhouette" in rule


@pytest.mark.parametrize("args,message", [
    (["--k", "50"], "outside [1, 20]"),
    (["--k", "many"], "integer or 'auto'"),
    (["--k-range", "5"], "START:STOP"),
    (["--k-range", "30:40"], "needs some k"),
])
def test_bad_k_exit_2(tmp_path, caplog, args, message):
    store = vector_store(tmp_path, clustered(2, 10, dim=8)[0])
    assert main(["cluster", str(store.root), *args]) == 2
    assert message in caplog.text


def test_empty_store_exit_2(tmp_path, caplog):
    store = vector_store(tmp_path, np.zeros((0, 8), np.float32))
    assert main(["cluster", str(store.root), "--k", "3"]) == 2
    assert "empty" in caplog.text


def test_sweep_sample_smaller_than_data_polishes_on_all(monkeypatch):
    """With a sweep sample smaller than the data, inertia is over all works, medoids come from
    the sample, polishing converged, and the planted clusters are found."""
    import artenc.cluster as C

    monkeypatch.setattr(C, "SWEEP_MAX", 120)
    x, truth = clustered(6, 60, dim=32, spread=0.3, seed=5)
    x = x[np.random.default_rng(0).permutation(len(x))]
    rows, fits, _ = C.sweep_k(x, [4, 6, 8], seed=0)
    d_all = C.cross_distances(x, x)
    for row in rows:
        fit = fits[row["k"]]
        assert np.all(fit.medoids < 120)  # medoid candidates come from the sweep sample
        loss = d_all[np.arange(len(x)), fit.medoids[fit.labels]].sum()
        assert row["inertia"] == pytest.approx(loss, rel=1e-4)
        again = C.polish(d_all[:, :120], fit.medoids)  # polished: a fixed point, loss never rises
        assert again.loss <= fit.loss + 1e-3
    assert len(np.unique(fits[6].labels)) == 6
