"""dedup: planted duplicates, no chaining, keeper rule, leakage across splits, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artenc.cli import main
from artenc.dedup import (
    Pairs,
    candidate_pairs,
    clique_groups,
    copy_unique,
    find_duplicates,
    identical_pairs,
    representatives,
)
from artenc.errors import UsageError
from tests.helpers_search import vector_store


def planted(n: int = 300, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Random unit vectors (pairwise cosine ~0) plus near-copies of items 0..4 at rows n..n+4."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    copies = x[:5] + 0.1 * rng.standard_normal((5, dim)).astype(np.float32)
    return np.vstack([x, copies]), [(i, n + i) for i in range(5)]


def brute_pairs(x: np.ndarray, t: float) -> set[tuple[int, int]]:
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= t, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("exact", [True, False])
def test_candidate_pairs_match_brute_force(exact):
    x, _ = planted()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for t in (0.3, 0.9):
        pairs = candidate_pairs(x, t, exact=exact)
        found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
        truth = brute_pairs(x, t)
        assert found <= truth
        assert len(found) >= (len(truth) if exact else 0.9 * len(truth))
        np.testing.assert_allclose(pairs.sim, np.einsum("pd,pd->p", x[pairs.i], x[pairs.j]), atol=1e-5)


def test_planted_duplicates_and_keeper(tmp_path, capsys):
    x, truth = planted()
    sizes = [(100, 100)] * len(x)
    sizes[300] = (400, 300)  # the copy of item 0 has the higher resolution: it is kept
    store = vector_store(tmp_path, x, sizes=sizes)
    assert main(["dedup", str(store.root), "--no-verify", "--json", "--out", str(tmp_path / "d.csv")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["threshold"] == 0.9 and doc["verified"] is False
    paths = store.items["path"].tolist()
    got = {tuple(sorted((paths.index(g["keep"]), paths.index(d["path"])))) for g in doc["groups"]
           for d in g["duplicates"]}
    assert got == set(truth)
    keep = {g["keep"] for g in doc["groups"]}
    assert paths[300] in keep and paths[0] not in keep
    table = pd.read_csv(tmp_path / "d.csv")
    assert (table["role"] == "keep").sum() == 5 and (table["role"] == "duplicate").sum() == 5


def test_groups_do_not_chain(tmp_path):
    # A-B and B-C are 18 degrees apart (cos 0.95), A-C 36 degrees (cos 0.81)
    theta = np.arccos(0.95)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 16)).astype(np.float32)
    x[:, :2] = 0  # the others are orthogonal to the plane of A, B, C
    for r, a in enumerate((0.0, theta, 2 * theta)):
        x[r] = 0
        x[r, :2] = np.cos(a), np.sin(a)
    doc = find_duplicates(vector_store(tmp_path, x), 0.9, verify=False).to_dict()
    members = [{g["keep"], *(d["path"] for d in g["duplicates"])} for g in doc["groups"]]
    assert len(members) == 1 and len(members[0]) == 2  # never A, B and C together


def test_clique_groups_are_cliques():
    rng = np.random.default_rng(0)
    n = 60
    i, j = np.triu_indices(n, 1)
    keep = rng.random(len(i)) < 0.08
    pairs = Pairs(i[keep], j[keep], rng.random(keep.sum()).astype(np.float32))
    edges = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    groups = clique_groups(pairs, n)
    seen = [m for g in groups for m in g]
    assert len(seen) == len(set(seen))  # each item in at most one group
    for g in groups:
        assert all((min(a, b), max(a, b)) in edges for a in g for b in g if a != b)


def test_leak_across_split(tmp_path, capsys):
    x, truth = planted()
    split = ["train"] * len(x)
    split[300] = "test"  # the copy of item 0 sits in test: a leak; other copies stay in train
    store = vector_store(tmp_path, x, labels={"split": split})
    assert main(["dedup", str(store.root), "--no-verify", "--across", "split", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    paths = store.items["path"].tolist()
    assert len(doc["groups"]) == 1
    group = doc["groups"][0]
    assert {group["keep"], group["duplicates"][0]["path"]} == {paths[0], paths[300]}
    assert group["sides"] == ["test", "train"]


def test_copy_unique_never_touches_originals(tmp_path):
    from artenc.dedup import copy_unique

    src = tmp_path / "img"
    src.mkdir()
    x, _ = planted(n=20)
    store = vector_store(tmp_path, x)
    for p in store.items["path"]:
        (tmp_path / p.split("/")[-1]).write_bytes(b"x")
    doc = find_duplicates(store, 0.9, verify=False)
    assert copy_unique(store, doc, tmp_path / "unique") == 20
    assert len(list((tmp_path / "unique").iterdir())) == 20
    assert all((tmp_path / p.split("/")[-1]).exists() for p in store.items["path"])
    with pytest.raises(UsageError, match="overwrite the original"):
        copy_unique(store, doc, tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--threshold", "1.5"], "in [-1, 1]"),
    (["--threshold", "-2"], "in [-1, 1]"),
    (["--across", "nope"], "no such label column"),
    (["--min-inliers", "2"], "min-inliers"),
])
def test_bad_arguments_exit_2(tmp_path, caplog, args, message):
    store = vector_store(tmp_path, planted(n=10)[0])
    assert main(["dedup", str(store.root), "--no-verify", *args]) == 2
    assert message in caplog.text


def test_empty_store_exit_2(tmp_path, caplog):
    store = vector_store(tmp_path, np.zeros((0, 8), np.float32))
    assert main(["dedup", str(store.root)]) == 2
    assert "empty" in caplog.text


def brute_top_pairs(x: np.ndarray, t: float, m: int, floor: float) -> set[tuple[int, int]]:
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    out = brute_pairs(x, t)
    for i, row in enumerate(s):
        for j in np.argsort(-row)[:m]:
            if row[j] >= floor:
                out.add((min(i, int(j)), max(i, int(j))))
    return out


@pytest.mark.parametrize("exact", [True, False])
def test_top_m_rule_matches_brute_force(exact):
    x, _ = planted()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = candidate_pairs(x, 0.9, exact=exact, top_m=3, floor=0.05)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    truth = brute_top_pairs(x, 0.9, 3, 0.05)
    assert len(found) == len(pairs)  # no pair twice
    assert found <= truth
    assert len(found) >= (len(truth) if exact else 0.9 * len(truth))
    assert np.all(pairs.i < pairs.j)
    np.testing.assert_allclose(pairs.sim, np.einsum("pd,pd->p", x[pairs.i], x[pairs.j]), atol=1e-5)


def test_top_m_rule_finds_a_copy_below_the_threshold():
    """A planted copy at cosine ~0.65 (below 0.75) is its original's nearest neighbour: a candidate."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    noise = rng.standard_normal(64).astype(np.float32)
    copy = 0.65 * x[7] + np.sqrt(1 - 0.65**2) * (noise - (noise @ x[7]) * x[7]) / np.linalg.norm(
        noise - (noise @ x[7]) * x[7])
    x = np.vstack([x, copy[None]])
    assert 0.6 < float(x[7] @ x[400]) < 0.7
    old = candidate_pairs(x, 0.75)
    assert (7, 400) not in set(zip(old.i.tolist(), old.j.tolist(), strict=True))
    new = candidate_pairs(x, 0.75, top_m=5, floor=0.55)
    assert (7, 400) in set(zip(new.i.tolist(), new.j.tolist(), strict=True))
    assert len(new) <= 5 * len(x)  # O(n m) pairs, random pairs (cosine ~0) stay below the floor
    with pytest.raises(UsageError, match="top-m"):
        candidate_pairs(x, 0.75, top_m=-1)
    with pytest.raises(UsageError, match="floor"):
        candidate_pairs(x, 0.75, top_m=2, floor=1.5)


def test_cell_search_gives_the_exact_groups_on_planted_copies(tmp_path):
    """Large-n mode (k-means cells) on clustered data with planted copies: same pairs, same groups."""
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((30, 48)).astype(np.float32)
    x = centres[rng.integers(0, 30, 3000)] + 0.6 * rng.standard_normal((3000, 48)).astype(np.float32)
    src, dst = rng.choice(3000, size=(2, 40), replace=False)
    x[dst] = x[src] + 0.05 * rng.standard_normal((40, 48)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = candidate_pairs(x, 0.9, exact=True)
    cells = candidate_pairs(x, 0.9, exact=False)
    as_set = lambda p: set(zip(p.i.tolist(), p.j.tolist(), strict=True))  # noqa: E731
    assert as_set(cells) == as_set(exact)
    assert {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist(), strict=True)} <= as_set(cells)
    store = vector_store(tmp_path, x)
    groups = [find_duplicates(store, 0.9, verify=False, exact=e).groups for e in (True, False)]
    rows = [[g.rows for g in gs] for gs in groups]  # similarities may differ in the last digit
    assert rows[0] == rows[1] and len(rows[0]) >= 40


# ---------------------------------------------------------------- issue 12: cases 7 and 8


def test_identical_files_are_duplicates_at_threshold_one(tmp_path, capsys, lite0_encoder):
    """Byte-identical files are duplicates at threshold 1.0 with similarity exactly 1.0, with and
    without verification (a flat picture has no SIFT keypoints), and `pair` says 1.0."""
    from artenc.embedding import embed_folders
    from tests.conftest import painting

    img = tmp_path / "img"
    img.mkdir()
    painting(1).save(img / "a.jpg", quality=90)
    (img / "b.jpg").write_bytes((img / "a.jpg").read_bytes())
    painting(2).save(img / "c.jpg", quality=90)
    Image.new("RGB", (200, 150), (120, 90, 60)).save(img / "flat.png")
    (img / "flat_copy.png").write_bytes((img / "flat.png").read_bytes())
    embed_folders([img], tmp_path / "store", workers=0, encoder=lite0_encoder, progress=False)
    store = str(tmp_path / "store")
    want = {(str(img / "a.jpg"), str(img / "b.jpg")), (str(img / "flat.png"), str(img / "flat_copy.png"))}
    for verify in ([], ["--no-verify"]):
        assert main(["dedup", store, "--threshold", "1.0", "--json", *verify]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert {tuple(sorted((p["a"], p["b"]))) for p in doc["pairs"]} == want
        assert all(p["similarity"] == 1.0 for p in doc["pairs"])
        assert doc["duplicate_pairs"] == 2
        assert sorted(d["similarity"] for g in doc["groups"] for d in g["duplicates"]) == [1.0, 1.0]
    assert main(["pair", store, str(img / "a.jpg"), str(img / "b.jpg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["similarity"] == 1.0


@pytest.mark.parametrize("exact", [True, False])
def test_float_rounding_never_hides_identical_vectors(exact):
    """Rows whose float32 self-product is below 1 are found at threshold 1.0 by the range search
    and the top-m floor, exact and in k-means cells (`similarity_at_least`)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    low = np.flatnonzero(np.einsum("nd,nd->n", x, x) < 1.0)[:5]
    assert len(low) == 5  # the rounding the rule must forgive
    x = np.vstack([x, x[low]])
    want = {(int(r), 600 + i) for i, r in enumerate(low)}
    as_set = lambda p: set(zip(p.i.tolist(), p.j.tolist(), strict=True))  # noqa: E731
    assert as_set(candidate_pairs(x, 1.0, exact=exact)) == want
    assert want <= as_set(candidate_pairs(x, 1.0, exact=exact, top_m=1, floor=1.0))


def test_identical_pairs_by_hash():
    pairs = identical_pairs(np.array(["x", "y", "x", None, None, "x"], dtype=object))
    assert list(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == [(0, 2), (0, 5), (2, 5)]
    assert pairs.sim.dtype == np.float32 and np.all(pairs.sim == 1.0)


def star_and_chain(tmp_path) -> tuple:
    """Vectors of A, B, C (rows 0, 1, 2: keeper order by path) plus unrelated works: star
    (A~B, A~C, not B~C) and chain (A~B, B~C, not A~C) at threshold 0.9."""
    theta = np.arccos(0.95)
    rng = np.random.default_rng(3)
    stores = {}
    for name, angles in (("star", (0.0, -theta, theta)), ("chain", (0.0, theta, 2 * theta))):
        x = rng.standard_normal((20, 16)).astype(np.float32)
        x[:, :2] = 0  # the others are orthogonal to the plane of A, B, C
        for r, a in enumerate(angles):
            x[r] = 0
            x[r, :2] = np.cos(a), np.sin(a)
        root = tmp_path / name
        root.mkdir()
        stores[name] = vector_store(root, x)
        for p in stores[name].items["path"]:
            Path(p).write_bytes(b"x")
    return stores["star"], stores["chain"]


def test_every_pair_is_listed_and_copy_unique_keeps_no_two_duplicates(tmp_path, capsys):
    star, chain = star_and_chain(tmp_path)
    for store, dropped in ((star, {1, 2}), (chain, {1})):
        paths = store.items["path"].tolist()
        assert main(["dedup", str(store.root), "--no-verify", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["duplicate_pairs"] == 2 and len(doc["pairs"]) == 2
        in_groups = sum(len(g["duplicates"]) for g in doc["groups"])
        assert in_groups == 1  # the clique grouping shows one pair only: the list shows both
        assert {(p["a"], p["b"]) for p in doc["pairs"]} == (
            {(paths[0], paths[1]), (paths[0], paths[2])} if store is star else {(paths[0], paths[1]), (paths[1], paths[2])})
        report = find_duplicates(store, 0.9, verify=False)
        assert report.duplicate_paths == {paths[r] for r in dropped}
        out = store.root.parent / "unique"
        assert copy_unique(store, report, out) == len(paths) - len(dropped)
        assert sorted(p.name for p in out.iterdir()) == sorted(Path(paths[r]).name for r in range(len(paths))
                                                               if r not in dropped)
    assert main(["dedup", str(star.root), "--no-verify"]) == 0
    assert "1 more duplicate pairs" in capsys.readouterr().out


def test_representatives_never_keep_two_duplicates():
    """On random graphs: kept rows form no pair, every dropped row pairs with its (kept) keeper."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(2, 40))
        i, j = np.triu_indices(n, 1)
        keep = rng.random(len(i)) < rng.uniform(0.02, 0.4)
        pairs = Pairs(i[keep], j[keep], np.ones(keep.sum(), np.float32))
        rank = rng.permutation(n)
        rep = representatives(pairs, rank)
        kept = rep == np.arange(n)
        edges = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
        assert not any(kept[a] and kept[b] for a, b in edges)
        for r in np.flatnonzero(~kept):
            assert kept[rep[r]] and (min(r, rep[r]), max(r, rep[r])) in edges
    star = Pairs(np.array([0, 0]), np.array([1, 2]), np.ones(2, np.float32))
    chain = Pairs(np.array([0, 1]), np.array([1, 2]), np.ones(2, np.float32))
    assert representatives(star, np.arange(3)).tolist() == [0, 0, 0]
    assert representatives(chain, np.arange(3)).tolist() == [0, 0, 2]


def test_crops_of_one_painting_are_both_dropped(tmp_path, capsys, lite0_encoder):
    """Real images: A and two non-overlapping crops B, C of it. Verification confirms A~B and A~C
    (not B~C); both pairs are listed and copy-unique keeps A but neither crop."""
    from artenc.embedding import embed_folders
    from tests.helpers_search import painting as textured

    img = tmp_path / "img"
    img.mkdir()
    a = textured(5, (640, 480))
    a.save(img / "a.jpg", quality=92)
    a.crop((0, 0, 300, 480)).save(img / "b.jpg", quality=92)
    a.crop((340, 0, 640, 480)).save(img / "c.jpg", quality=92)
    for s in range(6, 10):
        textured(s, (320, 256)).save(img / f"o{s}.jpg", quality=90)
    embed_folders([img], tmp_path / "store", workers=0, encoder=lite0_encoder, progress=False)
    out = tmp_path / "unique"
    assert main(["dedup", str(tmp_path / "store"), "--json", "--copy-unique-to", str(out), "--workers", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {(p["a"], p["b"]) for p in doc["pairs"]} == {(str(img / "a.jpg"), str(img / "b.jpg")),
                                                       (str(img / "a.jpg"), str(img / "c.jpg"))}
    assert all(p["inliers"] >= 15 for p in doc["pairs"])
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "o6.jpg", "o7.jpg", "o8.jpg", "o9.jpg"]


def test_flipped_copy_is_a_mirrored_duplicate(tmp_path, capsys, lite0_encoder):
    """Real images: a painting, an edited copy, its mirror image, and a mirrored unrelated work.
    The flipped pairs are listed with "mirrored": true, the direct one without the key."""
    from PIL import ImageOps

    from artenc.embedding import embed_folders
    from tests.helpers_search import edited
    from tests.helpers_search import painting as textured

    img = tmp_path / "img"
    img.mkdir()
    a = textured(5, (480, 360))
    a.save(img / "a.png")
    edited(a, 3).save(img / "a_copy.jpg", quality=70)
    ImageOps.mirror(a).save(img / "a_flip.jpg", quality=80)
    ImageOps.mirror(textured(6, (320, 256))).save(img / "o6_flip.jpg", quality=80)
    for s in range(7, 10):
        textured(s, (320, 256)).save(img / f"o{s}.jpg", quality=90)
    embed_folders([img], tmp_path / "store", workers=0, encoder=lite0_encoder, progress=False)
    # threshold 0.3: every pair is a candidate, verification alone decides
    assert main(["dedup", str(tmp_path / "store"), "--threshold", "0.3", "--json", "--workers", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    pairs = {(Path(p["a"]).name, Path(p["b"]).name): p.get("mirrored") for p in doc["pairs"]}
    assert pairs == {("a.png", "a_copy.jpg"): None, ("a.png", "a_flip.jpg"): True, ("a_flip.jpg", "a_copy.jpg"): True}
    assert all(p["inliers"] >= 15 for p in doc["pairs"])
    [group] = doc["groups"]
    assert Path(group["keep"]).name == "a.png"
    assert {Path(d["path"]).name: d.get("mirrored") for d in group["duplicates"]} == {"a_copy.jpg": None,
                                                                                     "a_flip.jpg": True}


def test_the_candidate_log_line_names_the_top_m_rule_only_when_it_is_used(tmp_path, caplog):
    """--no-verify has no top-m rule: the log line gave "or among the 0 nearest" (newcomer M3); a
    threshold of 0.9999 is printed as given, not rounded to 1.000."""
    x, _ = planted()
    store = vector_store(tmp_path, x)
    with caplog.at_level("INFO", logger="artenc.dedup"):
        find_duplicates(store, 0.9999, verify=False)
    assert "candidate pairs (cosine >= 0.9999)" in caplog.text and "nearest" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="artenc.dedup"):
        find_duplicates(store, 0.95, verify=False, top_m=3)
    assert "or among the 3 nearest with cosine >= " in caplog.text
