"""cluster: planted clusters recovered, k chosen automatically, sampling, plots, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artenc.cli import main
from artenc.cluster import (
    choose_k,
    cluster_store,
    cluster_vectors,
    cosine_distances,
    fit_kmedoids,
    kmedoids_plusplus,
    same_pictures,
)
from artenc.errors import ParameterError
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


# ---------------------------------------------------------------- issue 12: case 9


def copies_of_one(distinct: int = 8, copies: int = 10, seed: int = 0) -> np.ndarray:
    """`distinct` random unit vectors, then `copies` identical copies of the first one."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((distinct, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.vstack([x, np.repeat(x[:1], copies, axis=0)])


def distinct_vectors(x: np.ndarray, rows: np.ndarray) -> int:
    return len({x[r].tobytes() for r in rows})


def test_medoids_are_distinct_pictures_for_a_fixed_k(tmp_path, caplog):
    x = copies_of_one()
    result = cluster_vectors(x, 8)
    assert distinct_vectors(x, result.medoids) == 8  # not five copies of work 0
    assert sorted(result.sizes.tolist()) == [1] * 7 + [11]  # the copies join their picture
    assert len(set(result.labels[[0, *range(8, 18)]].tolist())) == 1
    with pytest.raises(ParameterError, match=r"12 exceeds the number of distinct pictures.* 8 distinct") as err:
        cluster_vectors(x, 12)
    assert err.value.param == "k"
    store = vector_store(tmp_path, x)
    assert main(["cluster", str(store.root), "--k", "12"]) == 2
    assert "k 12 exceeds" in caplog.text and "8 distinct pictures among the 18 works" in caplog.text


def test_auto_k_never_picks_two_copies():
    """Six identical works plus planted clusters: every medoid is a different picture."""
    x, _ = clustered(4, 12, dim=16, spread=0.3, seed=7)
    x = np.vstack([x, np.repeat(x[:1], 6, axis=0)])
    result = cluster_vectors(x, "auto", k_range="2:12")
    assert distinct_vectors(x, result.medoids) == result.k
    with pytest.raises(ParameterError, match="'auto' needs at least 3 distinct pictures"):
        cluster_vectors(copies_of_one(2, 5), "auto")


def test_weighted_fit_equals_the_fit_of_the_repeated_points():
    """A point of weight w costs as much as w copies: the loss of the weighted fit on distinct
    points equals the loss of the same medoids on the expanded data, and is optimal here."""
    import itertools

    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.integers(1, 6, 12)
    d = cosine_distances(x)
    fit = fit_kmedoids(d, 3, weights=w.astype(np.float32))
    expanded = cosine_distances(np.repeat(x, w, axis=0))
    start = np.concatenate([[0], np.cumsum(w)[:-1]])
    loss_expanded = expanded[:, start[fit.medoids]].min(axis=1).sum()
    assert fit.loss == pytest.approx(loss_expanded, rel=1e-5)
    best = min((d[:, list(m)].min(axis=1) * w).sum() for m in itertools.combinations(range(12), 3))
    assert fit.loss == pytest.approx(best, rel=1e-5)


def test_same_pictures_joins_rounding_noise_hashes_and_keepers(tmp_path):
    x = copies_of_one(5, 2)
    x[5] = x[5] * np.float32(1 + 1e-7)  # not bitwise equal, cosine 1.0 up to rounding
    reps, inverse = same_pictures(x)
    assert len(reps) == 5 and inverse.tolist() == [0, 1, 2, 3, 4, 0, 0]
    reps, inverse = same_pictures(x, np.array([0, 1, 1, 2, 3, 4, 5]))  # rows 1 and 2: same file
    assert len(reps) == 4 and inverse[1] == inverse[2]
    store = vector_store(tmp_path, copies_of_one(6, 0))
    keepers = np.array([0, 0, 2, 3, 4, 5])  # a duplicate report: row 1 is a copy of row 0
    result = cluster_store(store, 5, keepers=keepers)
    assert 0 in result.medoids or 1 in result.medoids
    assert not {0, 1} <= set(result.medoids.tolist())
    with pytest.raises(ParameterError, match="5 distinct"):
        cluster_store(store, 6, keepers=keepers)


# ---------------------------------------------------------------- issue 15: more ways to group


def planted_with_noise(per: int = 40, noise: int = 10, seed: int = 1, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """3 tight clusters whose centres share a direction (centre cosines ~0.5), then `noise`
    uniform random unit vectors (cosine ~0 to everything); truth -1 for the noise rows."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((1, dim))
    common /= np.linalg.norm(common)
    centres = common + rng.standard_normal((3, dim)) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(3), per)
    x = centres[truth] + 0.15 * rng.standard_normal((len(truth), dim)) / np.sqrt(dim)
    x = np.vstack([x, rng.standard_normal((noise, dim))]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.concatenate([truth, np.full(noise, -1)])


def same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    """Found labels equal the truth up to renaming the clusters; -1 (noise) must match exactly."""
    if not np.array_equal(found < 0, truth < 0):
        return False
    pairs = set(zip(found[truth >= 0].tolist(), truth[truth >= 0].tolist(), strict=True))
    return len(pairs) == len({f for f, _ in pairs}) == len({t for _, t in pairs}) == len(np.unique(truth[truth >= 0]))


@pytest.mark.parametrize("seed", [1, 3])
@pytest.mark.parametrize("method", ["hdbscan", "dbscan"])
def test_density_methods_find_the_clusters_and_label_the_noise(method, seed):
    x, truth = planted_with_noise(seed=seed)
    result = cluster_vectors(x, method=method)
    assert result.k == 3 and result.method == method
    assert same_partition(result.labels, truth)
    assert result.noise.tolist() == list(range(120, 130))
    assert np.isnan(result.distances[truth < 0]).all() and np.isfinite(result.distances[truth >= 0]).all()
    assert all(result.labels[m] == c for c, m in enumerate(result.medoids))
    assert result.silhouette is not None and result.silhouette > 0.5
    if method == "dbscan":  # eps at the knee of the k-distance curve: between the clusters' and the noise's
        assert 0 < result.params["eps"] < 0.2 and result.params["min_samples"] == 5


def test_kmeans_k3_recovers_the_planted_clusters():
    x, truth = planted_with_noise()
    result = cluster_vectors(x, 3, method="kmeans")
    assert result.k == 3 and len(result.noise) == 0
    clustered = truth >= 0
    assert same_partition(result.labels[clustered], truth[clustered])
    # the representative is the member nearest its centroid (the members' mean): their cosine medoid
    for c, m in enumerate(result.medoids):
        members = np.flatnonzero(result.labels == c)
        sums = cosine_distances(x[members]).sum(axis=1)
        assert m in members and sums[members.tolist().index(m)] <= sums.min() + 1e-3


def test_kmeans_auto_sweeps_the_same_curves(tmp_path, capsys):
    x, truth = clustered(5, 30, dim=16, spread=0.3, seed=3)
    store = vector_store(tmp_path, x)
    assert main(["cluster", str(store.root), "--method", "kmeans", "--k-range", "2:10", "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "kmeans" and doc["k"] == 5 and sorted(doc["sizes"]) == [30] * 5
    assert [r["k"] for r in doc["sweep"]] == list(range(2, 10))
    assert {"inertia", "distortion", "silhouette", "gap", "gap_sd"} <= set(doc["sweep"][0])
    inertia = [r["inertia"] for r in doc["sweep"]]
    assert inertia == sorted(inertia, reverse=True)  # more clusters, less cost
    assert "knee" in doc["rule"] or "silhouette" in doc["rule"]
    assert doc["noise"] == {"count": 0, "paths": []}
    assert {"elbow.png", "silhouette.png", "medoids.png"} <= {p.name for p in (tmp_path / "plots").iterdir()}


@pytest.mark.parametrize("method,options", [("kmeans", {"k": 3}), ("dbscan", {}), ("hdbscan", {})])
def test_sampled_methods_assign_the_rest(method, options):
    """Stores above sample_size: the rest joins its nearest centroid (kmeans) or the cluster of
    its nearest clustered work when close enough, else noise (dbscan, hdbscan)."""
    x, truth = planted_with_noise(per=300, noise=60)
    result = cluster_vectors(x, method=method, sample_size=200, **options)
    assert result.sample_size == 200 and len(result.labels) == 960 and result.k == 3
    clustered = truth >= 0
    if method == "kmeans":
        assert same_partition(result.labels[clustered], truth[clustered])
        return
    assert set(result.noise.tolist()) >= set(range(900, 960))  # far works never join a cluster
    joined = result.labels[clustered] >= 0
    assert same_partition(result.labels[clustered][joined], truth[clustered][joined])
    assert joined.mean() >= (1.0 if method == "dbscan" else 0.95)


def test_identical_copies_per_method():
    """kmeans: copies are one weighted point (medoids are distinct pictures); dbscan: copies count
    towards min_samples (a pile of 6 copies of a lone work is dense); hdbscan: each distinct
    picture counts once (the pile stays noise)."""
    x, truth = planted_with_noise()
    x = np.vstack([x, np.repeat(x[125:126], 5, axis=0)])  # noise row 125 and 5 copies of it
    km = cluster_vectors(x, 3, method="kmeans")
    assert distinct_vectors(x, km.medoids) == 3
    db = cluster_vectors(x, method="dbscan", eps=0.1)
    assert db.k == 4 and len(set(db.labels[[125, *range(130, 135)]].tolist())) == 1 and db.labels[125] >= 0
    hd = cluster_vectors(x, method="hdbscan")
    assert hd.k == 3 and (hd.labels[[125, *range(130, 135)]] == -1).all()


def test_method_json_shape(tmp_path, capsys):
    x, truth = planted_with_noise()
    store = vector_store(tmp_path, x, labels={"style": [f"s{t}" for t in truth]})
    assert main(["cluster", str(store.root), "--method", "dbscan", "--min-samples", "4", "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"method", "k", "count", "sampled", "sample_size", "inertia", "distortion", "silhouette",
                        "medoids", "sizes", "clusters", "noise", "rule", "params", "plots"}
    assert doc["method"] == "dbscan" and doc["k"] == 3 and doc["count"] == 130
    assert doc["params"]["min_samples"] == 4 and "knee" in doc["rule"]
    paths = store.items["path"].tolist()
    assert doc["noise"] == {"count": 10, "paths": paths[120:]}
    assert sum(doc["sizes"]) + doc["noise"]["count"] == doc["count"]
    assert all(c["labels"]["style"]["purity"] == 1.0 for c in doc["clusters"])
    assert [c["medoid"] for c in doc["clusters"]] == doc["medoids"]
    assert "noise.png" in {p.name for p in (tmp_path / "plots").iterdir()}


def test_default_json_is_kmedoids_unchanged(tmp_path, capsys):
    x, _ = clustered(3, 10, dim=8, seed=1)
    store = vector_store(tmp_path, x)
    assert main(["cluster", str(store.root), "--k", "3", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["cluster", str(store.root), "--k", "3", "--json", "--method", "kmedoids"]) == 0
    assert json.loads(capsys.readouterr().out) == default
    assert list(default) == ["k", "count", "sampled", "sample_size", "inertia", "distortion", "medoids", "sizes",
                             "clusters"]
    assert list(default["clusters"][0]) == ["cluster", "medoid", "size", "mean_distance"]


@pytest.mark.parametrize("args,message", [
    (["--method", "spectral"], "--method must be one of kmedoids, kmeans, hdbscan, dbscan"),
    (["--method", "dbscan", "--k", "3"], "-k is found by dbscan itself"),
    (["--eps", "0.1"], "--eps applies to method 'dbscan' only"),
    (["--method", "dbscan", "--eps", "3"], "--eps must be a cosine distance in (0, 2]"),
    (["--method", "kmeans", "--min-samples", "3"], "--min-samples applies to methods hdbscan and dbscan"),
    (["--method", "hdbscan", "--min-cluster-size", "1"], "--min-cluster-size must be an integer >= 2"),
    (["--method", "hdbscan", "--min-cluster-size", "50"], "50 needs at least 50 distinct pictures"),
])
def test_bad_method_options_exit_2(tmp_path, caplog, args, message):
    store = vector_store(tmp_path, clustered(2, 10, dim=8)[0])
    assert main(["cluster", str(store.root), *args]) == 2
    assert message in caplog.text
