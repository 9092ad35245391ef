"""Saved ivfpq indexes on small stores (newcomer report B4, U2, M1, M2): exact dedup, 8-bit
codes only, no compaction under a covering index, m for dims with few divisors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from artenc.dedup import find_duplicates
from artenc.index import IVF_PQ_MIN_ROWS, build_store_index, ivf_params, load_index, save_index
from artenc.store import BASE_COLUMNS, l2_normalize
from tests.helpers_search import vector_store


def near_copies(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """n unit vectors: half random, half noisy copies of them (cosines spread over 0.3-0.99)."""
    rng = np.random.default_rng(seed)
    base = l2_normalize(rng.standard_normal((n // 2, dim)))
    noise = rng.uniform(0.1, 1.5, (n // 2, 1)) * l2_normalize(rng.standard_normal((n // 2, dim)))
    return l2_normalize(np.concatenate([base, base + noise]))


def new_rows(tmp_path, names: list[str]) -> pd.DataFrame:
    paths = [str(tmp_path / name) for name in names]
    return pd.DataFrame({"path": paths, "relpath": names, "sha256": [f"{i:063x}c" for i in range(len(names))],
                         "size": 1, "mtime_ns": 1, "width": 1, "height": 1, "error": None,
                         "row": np.arange(len(names))}, columns=BASE_COLUMNS)


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.9])
def test_saved_ivfpq_index_never_changes_dedup_on_a_small_store(tmp_path, threshold):
    store = vector_store(tmp_path, near_copies(98))
    exact = find_duplicates(store, threshold, verify=False, exact=True)
    save_index(store, build_store_index(store, "ivfpq"))
    saved = find_duplicates(store, threshold, verify=False)
    assert saved.duplicate_pairs == exact.duplicate_pairs > 0
    assert [g.rows for g in saved.groups] == [g.rows for g in exact.groups]


@pytest.mark.parametrize("n", [98, 1000, IVF_PQ_MIN_ROWS - 1, IVF_PQ_MIN_ROWS, 10**6])
def test_ivf_params_never_use_fewer_than_8_bits(n):
    params = ivf_params(n, 1280)
    assert params["nbits"] == 8
    assert params["codes"] == ("pq" if n >= IVF_PQ_MIN_ROWS else "flat")
    assert params["train"] >= (256 * 40 if params["codes"] == "pq" else 1) and params["train"] <= n


@pytest.mark.parametrize("dim,m", [(4 * 8123, 8123), (1280, 160), (1000, 125), (64, 8), (1283, 1283), (1290, 129)])
def test_pq_m_is_the_divisor_nearest_dim_over_8(dim, m):
    assert ivf_params(500, dim)["m"] == m
    assert dim % m == 0


def test_a_covering_ivfpq_index_keeps_a_small_store_uncompacted(tmp_path):
    store = vector_store(tmp_path, near_copies(100, seed=1))
    plain = vector_store(tmp_path / "plain", near_copies(100, seed=1))
    save_index(store, build_store_index(store, "ivfpq"))
    extra = near_copies(10, seed=2)
    for s in (store, plain):
        s.append_segment(new_rows(tmp_path, [f"new_{i}.jpg" for i in range(10)]), extra)
        s.reload()
    assert len(plain.compaction_plan()) == 2  # small and no index: one segment is cheapest
    assert store.indexed_segments() == store.segment_ids()[:1]
    assert store.compaction_plan() == [] and store.compact_if_worth_it() == []
    grown = load_index(store.reload())
    assert grown.index.ntotal == 110  # extended, not stale
    store.remove([str(tmp_path / f"img_{i:05d}.jpg") for i in range(40)])  # dead rows past the bound
    assert store.reload().compaction_plan() == store.segment_ids()


def test_masked_rows_message_names_compaction(tmp_path, caplog):
    store = vector_store(tmp_path, near_copies(100, seed=3))
    save_index(store, build_store_index(store, "ivfpq"))
    store.remove([str(tmp_path / "img_00001.jpg")])
    with caplog.at_level(logging.INFO, logger="artenc.index"):
        load_index(store.reload())
    assert "go away when the store is compacted" in caplog.text
    assert "rebuild to drop them" not in caplog.text
