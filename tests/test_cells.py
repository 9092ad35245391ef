"""`artenc.cells`: the k-means cell join finds exactly the pairs an all-pairs search finds,
because of its boundary-listing rule (without it, pairs split by a boundary are lost)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artenc import cells
from artenc.cells import (
    assign_cells,
    boundary_reach,
    cell_pairs,
    error_margin,
    join_cost,
    refine_cells,
    train_cells,
)
from artenc.errors import ParameterError
from artenc.search import ArrayRows, similar_pairs
from artenc.store import l2_normalize
from tests.helpers_search import vector_store


def as_set(pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    """n unit vectors around `clusters` centres, with many near pairs across cell boundaries."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((clusters, dim)))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))
    return l2_normalize(x).astype(np.float32)


@pytest.mark.parametrize("threshold,spread", [(0.5, 0.5), (0.8, 0.3), (0.95, 0.15)])
def test_cell_pairs_equal_all_pairs(threshold, spread):
    x = clustered(3000, 16, 4, spread, seed=1)  # few clusters, many cells: boundaries cut through clusters
    exact = similar_pairs(x, threshold)
    found = cell_pairs(ArrayRows(x), threshold, nlist=24, max_listed=24, progress=False)
    assert len(exact) > 50
    assert as_set(found) == as_set(exact)
    np.testing.assert_allclose(found.sim, np.einsum("pd,pd->p", x[found.i], x[found.j]), atol=1e-5)
    assert np.all(found.i < found.j)


def test_without_the_boundary_listing_pairs_are_lost():
    x = clustered(3000, 16, 4, 0.5, seed=1)
    exact = as_set(similar_pairs(x, 0.8))
    own_cell_only = as_set(cell_pairs(ArrayRows(x), 0.8, nlist=24, max_listed=0, progress=False))
    assert own_cell_only < exact  # SemDeDup's plain join misses pairs split by a boundary
    cells = assign_cells(ArrayRows(x), train_cells(ArrayRows(x), 24)[0], 0.8, max_listed=0, progress=False)
    assert cells.capped > 0 and len(cells.listed_rows) == 0  # and says how many vectors it capped


def test_listing_follows_the_threshold():
    x = ArrayRows(clustered(3000, 16, 4, 0.5, seed=2))
    centroids, _ = train_cells(x, 24)
    loose = assign_cells(x, centroids, 0.5, max_listed=24, progress=False)
    tight = assign_cells(x, centroids, 0.99, max_listed=24, progress=False)
    assert len(tight.listed_rows) < len(loose.listed_rows)  # a higher threshold lists fewer
    np.testing.assert_array_equal(tight.own, loose.own)  # the own cell is the nearest centroid
    np.testing.assert_array_equal(tight.own, np.argmax(x.vectors @ centroids.T, axis=1))
    assert boundary_reach(1.0) == 0.0 and boundary_reach(0.5) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), threshold=st.floats(0.3, 0.99), nlist=st.integers(1, 12),
       spread=st.floats(0.05, 1.0))
def test_cell_pairs_equal_all_pairs_for_any_data(seed, threshold, nlist, spread):
    x = clustered(300, 8, 3, spread, seed)
    found = cell_pairs(ArrayRows(x), threshold, nlist=nlist, max_listed=nlist, seed=seed % 7, progress=False)
    assert as_set(found) == as_set(similar_pairs(x, threshold))


def test_a_store_is_joined_by_rows_and_blocks_only(tmp_path):
    x = clustered(2000, 32, 5, 0.3, seed=3)
    store = vector_store(tmp_path, x)
    found = cell_pairs(store.reload(), 0.9, nlist=16, progress=False)
    assert "_vectors" not in store.__dict__  # the whole matrix was never materialised
    assert as_set(found) == as_set(similar_pairs(store.vectors, 0.9))


def test_the_error_margin_bounds_every_quantised_cosine():
    x = ArrayRows(clustered(2000, 24, 6, 0.4, seed=5))
    _, sq = train_cells(x, 4)
    y = np.vstack([x.vectors, np.eye(24, dtype=np.float32)])  # one-hot rows: far outside the trained ranges
    approx = sq.decode(sq.compute_codes(y))
    err = np.linalg.norm(y - approx, axis=1)
    exact, quantised = y @ y.T, approx @ approx.T
    assert err[-24:].min() > 10 * err[:-24].max()  # clipped: large errors, which the bound must cover
    assert np.all(exact <= quantised + error_margin(err[:, None], err[None, :]) + 1e-5)


def test_vectors_outside_the_quantiser_range_keep_their_pairs():
    rng = np.random.default_rng(6)
    x = clustered(1500, 24, 6, 0.4, seed=6)
    spikes = np.eye(24, dtype=np.float32)[:10]
    copies = l2_normalize(spikes + 0.05 * rng.standard_normal(spikes.shape)).astype(np.float32)
    y = np.vstack([x, spikes, copies])
    found = cell_pairs(ArrayRows(y), 0.9, nlist=8, max_listed=8, progress=False)
    assert as_set(found) == as_set(similar_pairs(y, 0.9))
    assert {(1500 + k, 1510 + k) for k in range(10)} <= as_set(found)


def test_a_dense_group_of_near_copies_keeps_every_pair():
    """k-means puts many centroids inside a dense group of copies: its members need many listings."""
    rng = np.random.default_rng(7)
    x = clustered(4500, 32, 20, 0.5, seed=7)
    group = l2_normalize(x[0] + 0.03 * rng.standard_normal((1500, 32))).astype(np.float32)
    y = np.vstack([x, group])
    exact = as_set(similar_pairs(y, 0.9))
    assert as_set(cell_pairs(ArrayRows(y), 0.9, nlist=80, progress=False)) == exact
    assert len(exact) >= 1500 * 1499 // 2
    assert len(as_set(cell_pairs(ArrayRows(y), 0.9, nlist=80, max_listed=8, progress=False))) < len(exact)


def test_a_group_of_near_identical_copies_keeps_every_pair_when_cells_split_it():
    """Newcomer B1: 1,000 copies within cosine 0.999998 of each other among 5,000 clustered works.
    Cells split inside such a group have centroids ~1e-4 apart, which float32 2 - 2 a.b cannot
    resolve; dividing by that rounded gap dropped up to half the group's pairs with no warning."""
    rng = np.random.default_rng(1)
    dim = 1280
    centres = rng.standard_normal((50, dim))
    x = l2_normalize(centres[rng.integers(0, 50, 5000)] + 0.05 * rng.standard_normal((5000, dim)))
    copy = l2_normalize(rng.standard_normal((1, dim)))
    group = l2_normalize(copy + 0.001 / np.sqrt(dim) * rng.standard_normal((1000, dim)))
    y = np.vstack([x, group]).astype(np.float32)
    y = y[rng.permutation(len(y))]
    for threshold in (0.9, 0.999):
        exact = as_set(similar_pairs(y, threshold))
        assert len(exact) >= 1000 * 999 // 2
        for refine in (True, False):
            assert as_set(cell_pairs(ArrayRows(y), threshold, refine=refine, progress=False)) == exact
        assert as_set(cell_pairs(ArrayRows(y), threshold, nlist=40, refine=False, progress=False)) == exact


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_stored_group_of_near_copies_loses_no_pair_to_the_cells(tmp_path, dtype):
    """The same fault through the store and `find_duplicates(exact=False)`, float16 storage too:
    800 copies within ~1e-6 of each other among 3,000 clustered works (before the fix: 103,523 and
    121,806 of 432,157 pairs missed at 0.995)."""
    from artenc.dedup import find_duplicates

    rng = np.random.default_rng(3)
    dim = 512
    x = l2_normalize(rng.standard_normal((40, dim))[rng.integers(0, 40, 3000)] + 0.05 * rng.standard_normal((3000, dim)))
    group = l2_normalize(l2_normalize(rng.standard_normal((1, dim))) + 0.0005 / np.sqrt(dim) * rng.standard_normal((800, dim)))
    store = vector_store(tmp_path, np.vstack([x, group]).astype(np.float32)[rng.permutation(3800)], dtype=dtype)
    exact = find_duplicates(store, 0.995, verify=False, exact=True).pairs
    cells_found = find_duplicates(store, 0.995, verify=False, exact=False).pairs
    assert len(exact.i) >= 800 * 799 // 2
    assert as_set(cells_found) == as_set(exact)


def test_gaps_resolve_centroids_that_nearly_coincide():
    """|c_A - c_B| of unit centroids 1e-4 apart, within 1e-3 of its value (float32 2 - 2 a.b: 1e-6)."""
    rng = np.random.default_rng(2)
    a = l2_normalize(rng.standard_normal((1, 1280)))[0]
    step = rng.standard_normal(1280)
    step -= (step @ a) * a
    c = l2_normalize(np.stack([a, a + 1e-4 * step / np.linalg.norm(step), a])).astype(np.float32)
    true = np.linalg.norm(c[0].astype(np.float64) - c[1].astype(np.float64))
    g = cells._gaps(c)
    assert g[0, 1] == pytest.approx(true, rel=1e-3) and g[1, 0] == pytest.approx(true, rel=1e-3)
    assert g[0, 2] == 0.0 and np.all(np.diag(g) == 0.0)


def test_too_many_pairs_are_refused_like_the_exact_search():
    rng = np.random.default_rng(8)
    x = np.vstack([clustered(540, 16, 4, 0.5, seed=8),
                   l2_normalize(np.ones(16) + 0.01 * rng.standard_normal((60, 16))).astype(np.float32)])
    assert len(similar_pairs(x, 0.9)) > 1000  # 60 near-copies: 1,770 pairs
    for nlist in (1, 4):
        with pytest.raises(ParameterError, match="threshold"):
            cell_pairs(ArrayRows(x), 0.9, max_pairs=1000, nlist=nlist, progress=False)


def scattered_groups(n: int, dim: int, groups: int, spread: float, seed: int) -> np.ndarray:
    """n unit vectors in `groups` tight groups around near-orthogonal centres: k-means with fewer
    cells than groups puts several in one cell, whose members the listing rule then lists widely."""
    return clustered(n, dim, groups, spread, seed)


def test_refined_cells_cost_less_and_find_the_same_pairs():
    x = scattered_groups(6000, 64, 120, 0.05, seed=9)
    rows = ArrayRows(x)
    centroids, _ = train_cells(rows, 23)  # cell_count(6000): several groups a cell
    refined = refine_cells(x, centroids, 0.9, len(x))
    assert len(refined) > len(centroids)
    assert join_cost(x, refined, 0.9, len(x))[2] < 0.5 * join_cost(x, centroids, 0.9, len(x))[2]
    exact = as_set(similar_pairs(x, 0.9))
    assert len(exact) > 1000
    assert as_set(cell_pairs(rows, 0.9, progress=False)) == exact  # nlist not given: refined
    assert as_set(cell_pairs(rows, 0.9, nlist=23, refine=False, max_listed=23, progress=False)) == exact
    before = assign_cells(rows, centroids, 0.9, max_listed=10_000, progress=False)
    after = assign_cells(rows, refined, 0.9, max_listed=10_000, progress=False)
    assert len(after.listed_rows) < len(before.listed_rows) / 4  # sharper centroids list far fewer


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), threshold=st.floats(0.3, 0.99), nlist=st.integers(1, 6),
       spread=st.floats(0.02, 1.0), groups=st.integers(1, 40))
def test_refined_cell_pairs_equal_all_pairs_for_any_data(monkeypatch, seed, threshold, nlist, spread, groups):
    monkeypatch.setattr(cells, "CELL_OVERHEAD", 0)  # so that cells of a few hundred vectors are split too
    x = scattered_groups(400, 16, groups, spread, seed)
    found = cell_pairs(ArrayRows(x), threshold, nlist=nlist, refine=True, max_listed=100_000, seed=seed % 7,
                       progress=False)
    assert as_set(found) == as_set(similar_pairs(x, threshold))
