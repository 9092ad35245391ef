"""Geometric verification: edited copies kept, unrelated works rejected, cache, dedup, re-ranking."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from artenc.cli import main
from artenc.defaults import MIN_INLIERS as DEFAULT_MIN_INLIERS
from artenc.verify import KeypointCache, count_inliers, extract
from tests.helpers_search import edited, image_store, painting


@pytest.fixture(scope="module")
def store(tmp_path_factory, lite0_encoder):
    return image_store(tmp_path_factory, lite0_encoder)


def test_inliers_separate_copies_from_other_works(tmp_path):
    kps = []
    for i in range(4):
        painting(i).save(tmp_path / f"o{i}.png")
        edited(painting(i), 50 + i).save(tmp_path / f"c{i}.jpg", quality=40)
        kps.append((extract(tmp_path / f"o{i}.png"), extract(tmp_path / f"c{i}.jpg")))
    for orig, copy in kps:
        assert len(orig.xy) > 50
        assert count_inliers(copy, orig) >= DEFAULT_MIN_INLIERS
    for i in range(4):
        for j in range(4):
            if i != j:
                assert count_inliers(kps[i][1], kps[j][0]) < DEFAULT_MIN_INLIERS


def test_keypoint_cache_round_trip_without_pickle(tmp_path):
    painting(7).save(tmp_path / "p.png")
    kp = extract(tmp_path / "p.png")
    cache = KeypointCache(tmp_path)
    cache.save("ab" * 32, kp)
    with np.load(cache.path("ab" * 32), allow_pickle=False) as z:
        assert set(z.files) == {"xy", "desc"} and z["desc"].dtype == np.uint8
    back = cache.load("ab" * 32)
    np.testing.assert_array_equal(back.desc, kp.desc)
    assert back.xy.shape == (len(kp.desc), 2)


def test_verified_dedup_finds_planted_copies_and_leak(store, capsys):
    # a low threshold makes every pair a candidate: verification alone must decide
    assert main(["dedup", str(store.root), "--threshold", "0.3", "--workers", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] is True and doc["candidate_pairs"] > 50
    found = {frozenset((g["keep"].rsplit("/", 1)[1], d["path"].rsplit("/", 1)[1]))
             for g in doc["groups"] for d in g["duplicates"]}
    assert found == {frozenset((f"p{i:02d}.png", f"p{i:02d}_copy.jpg")) for i in (0, 1, 7)}
    assert all(g["keep"].endswith(".png") for g in doc["groups"])  # the larger original is kept
    assert any((store.root / "keypoints").rglob("*.npz"))

    assert main(["dedup", str(store.root), "--threshold", "0.3", "--workers", "0", "--across", "split",
                 "--json"]) == 0
    leak = json.loads(capsys.readouterr().out)
    assert [g["keep"].rsplit("/", 1)[1] for g in leak["groups"]] == ["p00.png"]
    assert leak["groups"][0]["sides"] == ["test", "train"]


def test_copy_unique_to(store, tmp_path):
    out = tmp_path / "unique"
    assert main(["dedup", str(store.root), "--threshold", "0.3", "--workers", "0",
                 "--copy-unique-to", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"p{i:02d}.png" for i in range(12)]
    assert len(store.items) == 15 and all(os.path.exists(p) for p in store.items["path"])


def test_similar_verify_reranks_an_edited_photo(store, tmp_path, capsys):
    original = store.items["path"][store.items["relpath"] == "p05.png"].item()
    query = tmp_path / "photo.jpg"
    edited(painting(5), 99).save(query, quality=35)
    assert main(["similar", str(store.root), str(query), "-k", "3", "--verify", "--workers", "0",
                 "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["results"][0]["neighbors"][0]
    assert top["path"] == original and top["inliers"] >= DEFAULT_MIN_INLIERS


def test_ratio_matches_agree_with_opencv():
    import cv2

    from artenc.verify import RATIO, _ratio_matches

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 128), dtype=np.uint8)
    b = np.vstack([np.clip(a[:150].astype(int) + rng.integers(-5, 6, (150, 128)), 0, 255),
                   rng.integers(0, 256, (200, 128))]).astype(np.uint8)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.astype(np.float32), b.astype(np.float32), k=2)
    ref = {(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < RATIO * n.distance}
    q, t = _ratio_matches(a, b)
    assert set(zip(q.tolist(), t.tolist(), strict=True)) == ref
    assert len(ref) >= 140


def test_verification_workers_need_no_main_guard(tmp_path):
    """A plain script (no `if __name__ == "__main__":`) may start verification workers: they
    must not re-run the script (with `multiprocessing`'s spawn this crashed, BrokenProcessPool)."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text("import math\nfrom artenc.verify import _run\nprint('body')\n"
                      "print(_run(math.sqrt, [4.0, 9.0, 16.0], 2))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["body", "[2.0, 3.0, 4.0]"]  # the body ran once


# ----- mirrors (issue 15) ----------------------------------------------------------------
def test_mirror_permutation_matches_opencv_on_a_flipped_image():
    """Descriptors permuted by MIRROR_PERMUTATION are those OpenCV computes on the flipped image."""
    from artenc.verify import MIRROR_PERMUTATION, sift

    gray = np.asarray(painting(3, (400, 300)).convert("L"))
    kp, kpf = sift(gray, 3000), sift(np.ascontiguousarray(gray[:, ::-1]), 3000)
    width = gray.shape[1]
    assert sorted(MIRROR_PERMUTATION.tolist()) == list(range(128))
    permuted, unpermuted = [], []
    for xy, d in zip(kp.xy, kp.desc.astype(np.float32), strict=True):
        # the same spot in the flipped image: x -> width - 0.5 - x in OpenCV's keypoint coordinates
        # (measured; its first octave is the image upsampled 2x); several orientations may sit there
        near = np.flatnonzero(np.hypot(kpf.xy[:, 0] - (width - 0.5 - xy[0]), kpf.xy[:, 1] - xy[1]) < 0.3)
        if len(near):
            other = kpf.desc[near].astype(np.float32)
            scale = np.linalg.norm(other, axis=1)
            permuted.append(np.min(np.linalg.norm(other - d[MIRROR_PERMUTATION], axis=1) / scale))
            unpermuted.append(np.min(np.linalg.norm(other - d, axis=1) / scale))
    assert len(permuted) >= 0.8 * len(kp.xy) >= 200
    assert np.median(permuted) < 0.1 and np.mean(np.array(permuted) < 0.2) >= 0.85
    assert np.median(unpermuted) > 0.4  # the permutation is what makes them agree


def test_flipped_copy_matches_mirrored_and_unrelated_works_do_not(tmp_path):
    from dataclasses import replace

    from PIL import ImageOps

    from artenc.verify import COPIES, match

    def kp(img, name):
        img.save(tmp_path / name, quality=60)
        return extract(tmp_path / name)

    for i in range(3):
        orig = kp(painting(i), f"o{i}.png")
        flipped = kp(ImageOps.mirror(edited(painting(i), 60 + i)), f"f{i}.jpg")
        copy = kp(edited(painting(i), 70 + i), f"c{i}.jpg")
        other = kp(painting(20 + i), f"u{i}.jpg")
        other_flipped = kp(ImageOps.mirror(painting(20 + i)), f"uf{i}.jpg")
        assert count_inliers(flipped, orig) < DEFAULT_MIN_INLIERS  # SIFT alone is not mirror-aware
        found = match(flipped, orig)
        assert found.mirrored and found.inliers >= DEFAULT_MIN_INLIERS
        assert match(orig, flipped).mirrored  # either side may be the flipped one
        found = match(copy, orig)
        assert not found.mirrored and found.inliers >= DEFAULT_MIN_INLIERS
        assert match(other, orig).inliers < DEFAULT_MIN_INLIERS
        assert match(other_flipped, orig).inliers < DEFAULT_MIN_INLIERS
        assert match(flipped, orig, settings=replace(COPIES, mirror=False)).inliers < DEFAULT_MIN_INLIERS


def test_keypoint_cache_folder_names_the_settings(tmp_path):
    from artenc.verify import COPIES, LEGACY, VerifySettings

    assert KeypointCache(tmp_path).dir == tmp_path / COPIES.cache_version == tmp_path / "sift-v2-192-500"
    assert KeypointCache(tmp_path, LEGACY).dir.name == "sift-v2-512up-1500"  # never the old sift-v1-512
    assert VerifySettings(max_side=256).cache_version != COPIES.cache_version
    assert VerifySettings(method="ransac").cache_version == COPIES.cache_version  # matching only
    with pytest.raises(ValueError, match="method"):
        VerifySettings(method="lmeds")
