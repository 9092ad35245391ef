"""artenc.search against slow, obvious numpy references (whole score matrix, full sort).

Most cases use "lattice" unit vectors: coordinates in {0, +-1/2} with four non-zeros, so
every inner product is a multiple of 1/4, exact in float32 whatever the summation order,
and ties are everywhere. Results must then equal the reference exactly: the same ids in
the same order (ties by smaller id), whatever the block sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from artenc.errors import ParameterError
from artenc.search import (
    SIM_TOLERANCE,
    Pairs,
    as_unit_matrix,
    block_range_pairs,
    block_top_m_pairs,
    check_k,
    check_threshold,
    limit_threads,
    similar_pairs,
    similarity_at_least,
    top_k,
    top_k_of_candidates,
)
from artenc.vote import field_vote, knn_vote


def lattice(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """n unit vectors with four coordinates +-1/2 and the rest 0 (exact products, many ties)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        row[rng.choice(dim, size=4, replace=False)] = rng.choice([-0.5, 0.5], size=4)
    return x


def gaussian(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ref_top_k(q: np.ndarray, x: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Whole matrix in float64, full sort by (-similarity, id), padding with -inf / -1."""
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    if exclude is not None:
        for r, e in enumerate(exclude):
            if e >= 0:
                scores[r, e] = -np.inf
    sims = np.full((len(q), k), -np.inf)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for r, row in enumerate(scores):
        order = sorted(range(len(x)), key=lambda j, row=row: (-row[j], j))
        order = [j for j in order if np.isfinite(row[j])][:k]
        sims[r, :len(order)], ids[r, :len(order)] = row[order], order
    return sims.astype(np.float32), ids


def ref_range_pairs(x: np.ndarray, t: float) -> dict[tuple[int, int], float]:
    s = x.astype(np.float64) @ x.astype(np.float64).T
    return {(i, j): s[i, j] for i in range(len(x)) for j in range(i + 1, len(x)) if s[i, j] >= t - SIM_TOLERANCE}


def ref_top_m_pairs(x: np.ndarray, m: int, floor: float) -> set[tuple[int, int]]:
    _, ids = ref_top_k(x, x, m, exclude=np.arange(len(x)))
    s = x.astype(np.float64) @ x.astype(np.float64).T
    return {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(ids) for j in row
            if j >= 0 and s[i, j] >= floor - SIM_TOLERANCE}


def as_dict(p: Pairs) -> dict[tuple[int, int], float]:
    return {(int(a), int(b)): float(s) for a, b, s in zip(p.i, p.j, p.sim, strict=True)}


# ------------------------------------------------------------------------------ top-k


@pytest.mark.parametrize("m,n,k,query_block,matrix_block", [
    (7, 40, 5, None, 65536),  # one block
    (7, 40, 5, 2, 9),  # blocks smaller than n (and not dividing it)
    (5, 40, 1, 3, 1),  # one matrix row per block
    (6, 12, 12, 4, 5),  # k == n
    (6, 5, 9, None, 2),  # k > n: padded
    (3, 60, 20, 1, 7),  # many ties across block borders
])
@pytest.mark.parametrize("leave_out", [False, True])
def test_top_k_equals_reference(m, n, k, query_block, matrix_block, leave_out):
    x = lattice(n, seed=n)
    m = min(m, n) if leave_out else m
    q = x[:m] if leave_out else lattice(m, seed=100 + m)
    exclude = np.arange(m) if leave_out else None
    sims, ids = top_k(q, x, k, exclude=exclude, query_block=query_block, matrix_block=matrix_block)
    ref_sims, ref_ids = ref_top_k(q, x, k, exclude)
    assert sims.dtype == np.float32 and ids.dtype == np.int64 and sims.shape == ids.shape == (m, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(sims, ref_sims)
    if leave_out:
        assert not (ids == np.arange(m)[:, None]).any()


def test_top_k_ties_go_to_the_smaller_id():
    x = np.tile(np.eye(4, dtype=np.float32)[:1], (10, 1))  # ten identical vectors
    _, ids = top_k(x[:1], x, 4, matrix_block=3)
    assert ids.tolist() == [[0, 1, 2, 3]]
    _, ids = top_k(x[:2], x, 3, exclude=[1, 0], matrix_block=2)
    assert ids.tolist() == [[0, 2, 3], [1, 2, 3]]


def test_top_k_gaussian_vectors_match_reference_within_rounding():
    x, q = gaussian(300, seed=1), gaussian(20, seed=2)
    sims, ids = top_k(q, x, 10, query_block=7, matrix_block=64)
    ref_sims, _ = ref_top_k(q, x, 10)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-6)
    np.testing.assert_allclose(sims, np.einsum("qd,qkd->qk", q, x[ids]), atol=1e-6)


def test_top_k_empty_inputs_and_padding():
    x = lattice(3)
    sims, ids = top_k(np.zeros((0, 8), np.float32), x, 2)
    assert sims.shape == (0, 2) and ids.shape == (0, 2)
    sims, ids = top_k(x, np.zeros((0, 8), np.float32), 2)
    assert (ids == -1).all() and np.isneginf(sims).all()
    # one row, excluded: nothing left
    sims, ids = top_k(x[:1], x[:1], 3, exclude=[0])
    assert ids.tolist() == [[-1, -1, -1]] and np.isneginf(sims).all()


@settings(max_examples=50, derandomize=True, deadline=None)
@given(m=st.integers(0, 6), n=st.integers(0, 30), k=st.integers(1, 35), query_block=st.integers(1, 8),
       matrix_block=st.integers(1, 32), seed=st.integers(0, 2**16), leave_out=st.booleans())
def test_top_k_property(m, n, k, query_block, matrix_block, seed, leave_out):
    x = lattice(n, seed=seed)
    q = lattice(m, seed=seed + 1)
    exclude = None
    if leave_out and n:
        exclude = np.random.default_rng(seed).integers(-1, n, size=m)
    sims, ids = top_k(q, x, k, exclude=exclude, query_block=query_block, matrix_block=matrix_block)
    ref_sims, ref_ids = ref_top_k(q, x, k, exclude)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(sims, ref_sims)


def test_top_k_of_candidates_rescores_exactly():
    x, q = lattice(30, seed=3), lattice(4, seed=4)
    cand = np.array([[5, 1, -1, 7], [2, 3, 9, 4], [-1, -1, -1, -1], [0, 29, 28, 27]])
    sims, ids = top_k_of_candidates(q, cand, x, 3)
    for r in range(4):
        ranked = sorted((int(c) for c in cand[r] if c >= 0), key=lambda c, r=r: (-float(q[r] @ x[c]), c))[:3]
        expect = ranked + [-1] * (3 - len(ranked))
        assert ids[r].tolist() == expect
        assert sims[r].tolist() == [float(q[r] @ x[c]) if c >= 0 else -np.inf for c in expect]


# ------------------------------------------------------------------------------ pairs


@pytest.mark.parametrize("threshold", [1.0, 0.5, 0.25, 0.0])
@pytest.mark.parametrize("score_bytes", [64, 2**28])  # 16-row blocks vs one block
def test_range_pairs_equal_reference(threshold, score_bytes):
    x = lattice(70, seed=5)
    pairs = similar_pairs(x, threshold, score_bytes=score_bytes)
    assert as_dict(pairs) == ref_range_pairs(x, threshold)
    assert (pairs.i < pairs.j).all() and pairs.sim.dtype == np.float32 and pairs.i.dtype == np.int64


def test_identical_vectors_are_pairs_at_threshold_one():
    """Byte-identical duplicates whose float32 self-product rounds below 1 are still found."""
    x = gaussian(400, dim=512, seed=6)
    self_dots = np.einsum("nd,nd->n", x, x)
    below = np.flatnonzero(self_dots < 1.0)
    assert len(below), "the fixture must hold vectors whose product with themselves is < 1.0"
    src = below[:5]
    x = np.vstack([x, x[src]])
    dup = {(int(s), 400 + r) for r, s in enumerate(src)}
    pairs = similar_pairs(x, 1.0)
    assert set(as_dict(pairs)) == dup
    assert (pairs.sim < 1.0).any()  # found through the tolerance, not by luck
    with_top_m = similar_pairs(x, 1.0, top_m=2, floor=1.0)
    assert set(as_dict(with_top_m)) == dup


@pytest.mark.parametrize("top_m,floor", [(1, 0.0), (3, 0.25), (5, -1.0), (100, 0.5)])
def test_top_m_pairs_equal_reference(top_m, floor):
    x = lattice(60, seed=7)
    pairs = similar_pairs(x, 0.75, top_m=top_m, floor=floor, score_bytes=64)
    truth = set(ref_range_pairs(x, 0.75)) | ref_top_m_pairs(x, top_m, floor)
    assert set(as_dict(pairs)) == truth
    assert len(pairs) == len(truth)  # each pair once
    s = x.astype(np.float64) @ x.astype(np.float64).T
    np.testing.assert_array_equal(pairs.sim, s[pairs.i, pairs.j].astype(np.float32))


def test_block_primitives_on_an_unordered_block():
    """The k-means-cell path: rows and columns in any order, each pair once as (min, max)."""
    x = lattice(20, seed=8)
    rows, cols = np.array([7, 3, 12]), np.array([12, 0, 3, 7, 19, 5])
    scores = x[rows] @ x[cols].T
    i, j, s = block_range_pairs(scores, rows, cols, 0.5, upper=False)
    full = x.astype(np.float64) @ x.astype(np.float64).T
    expect = {(min(a, b), max(a, b)) for a in rows for b in cols if a != b and full[a, b] >= 0.5}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expect
    assert (i < j).all() and np.array_equal(s, full[i, j].astype(np.float32))
    scores[rows[:, None] == cols[None, :]] = -np.inf
    i, j, s = block_top_m_pairs(scores, rows, cols, 2, 0.0)
    expect = set()
    for a in rows:
        ranked = sorted((c for c in cols if c != a), key=lambda c, a=a: (-full[a, c], c))[:2]
        expect |= {(min(a, c), max(a, c)) for c in ranked if full[a, c] >= 0.0}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expect
    assert block_top_m_pairs(scores, rows, cols, 0, 0.0) is None


def test_pairs_concat_unique_select():
    p = Pairs.concat([(np.array([0, 1]), np.array([2, 3]), np.array([0.5, 0.6])),
                      (np.array([0]), np.array([2]), np.array([0.7]))])
    assert p.sim.dtype == np.float32 and len(p) == 3
    u = p.unique(4)
    assert list(zip(u.i.tolist(), u.j.tolist(), strict=True)) == [(0, 2), (1, 3)]
    assert u.sim[0] == np.float32(0.5)  # the first occurrence is kept
    assert len(Pairs.concat([])) == 0


def test_too_many_pairs_are_refused():
    x = lattice(40, seed=9)
    with pytest.raises(ParameterError) as err:
        similar_pairs(x, -1.0, max_pairs=100)
    assert err.value.param == "threshold"


# ------------------------------------------------------------------------------ rules and checks


def test_similarity_at_least():
    assert similarity_at_least(np.float32(0.9999994), 1.0)
    assert not similarity_at_least(np.float32(0.9999), 1.0)
    assert similarity_at_least(0.9, 0.9) and not similarity_at_least(0.8999, 0.9)
    got = similarity_at_least(np.array([-np.inf, 0.5, 1.0], np.float32), 0.5)
    assert got.tolist() == [False, True, True]


@pytest.mark.parametrize("bad,problem", [
    (np.zeros(4, np.float32), "2-D"),
    (np.zeros((2, 2, 2), np.float32), "2-D"),
    (np.zeros((3, 4), np.int64), "floating"),
    (np.zeros((3, 4), bool), "floating"),
    (np.full((3, 4), np.nan, np.float32), "NaN"),
    (np.array([[0.0, np.inf, 0.0, 0.0]], np.float32), "NaN or infinite"),
    (np.zeros((3, 5), np.float32), "dim 4"),
])
def test_bad_matrices_raise_parameter_error(bad, problem):
    with pytest.raises(ParameterError, match=problem) as err:
        as_unit_matrix(bad, "queries", dim=4)
    assert err.value.param == "queries"
    with pytest.raises(ParameterError):
        top_k(bad, lattice(3, dim=4), 1)


def test_float64_and_float16_are_cast_to_float32():
    x = lattice(5)
    for dtype in (np.float64, np.float16):
        y = as_unit_matrix(x.astype(dtype))
        assert y.dtype == np.float32 and y.flags.c_contiguous and np.array_equal(y, x)


@pytest.mark.parametrize("call,param", [
    (lambda: top_k(lattice(2), lattice(3), 0), "k"),
    (lambda: top_k(lattice(2), lattice(3), True), "k"),
    (lambda: top_k(lattice(2), lattice(3), 2, exclude=[0]), "exclude"),
    (lambda: top_k(lattice(2, dim=8), lattice(3, dim=6), 1), "queries"),
    (lambda: check_k(1.5), "k"),
    (lambda: check_threshold(1.5), "threshold"),
    (lambda: check_threshold(float("nan"), "floor"), "floor"),
    (lambda: similar_pairs(lattice(3), 0.5, top_m=-1), "top_m"),
    (lambda: similar_pairs(lattice(3), 0.5, top_m=1, floor=2.0), "floor"),
    (lambda: limit_threads(0), "threads"),
])
def test_bad_parameters_are_named(call, param):
    with pytest.raises(ParameterError) as err:
        call()
    assert err.value.param == param and str(err.value).startswith(param + " ")


def test_limit_threads_sets_and_restores_blas_threads():
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    blas = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]  # noqa: E731
    before = blas()
    assert before
    with limit_threads(1):
        assert blas() == [1] * len(before)
    assert blas() == before


# ------------------------------------------------------------------------------ the kNN vote


def test_one_vote_for_evaluation_and_prediction():
    from artenc import evaluate, predict

    assert evaluate.knn_vote is knn_vote and predict.field_vote is field_vote
    assert knn_vote(["a", "b", "b", "a"], [0.9, 0.5, 0.4, 0.1])[:2] == ("a", 0.5)  # 2-2: 1.0 > 0.9
    vote = field_vote(["x", None, float("nan"), "", "y", "y"], [0.9, 0.9, 0.9, 0.9, 0.2, 0.1])
    assert vote == {"label": "y", "confidence": round(2 / 3, 4), "votes": {"y": 2, "x": 1}}
    assert field_vote([None], [0.5]) == {"label": None, "confidence": 0.0, "votes": {}}
