"""Geometric verification of near-duplicate candidates: SIFT, ratio test, homography, mirrors.

Two images are the same work (an edited copy: cropped, slightly rotated, resized,
re-exposed, re-compressed, blurred, framed, turned gray, or mirrored left to right) when at
least `min_inliers` SIFT matches that pass Lowe's ratio test (0.75) agree on one homography
(`VerifySettings.method`: MAGSAC++ by default, 5 px reprojection error); inliers are counted
as distinct keypoint positions, and a homography that scales areas by less than 1/100 or
more than 100 (or mirrors) counts as no match. The default minimum,
`artenc.defaults.MIN_INLIERS` = 15: edited copies keep well above it, unrelated paintings
almost never reach it.

Mirrors: when the direct match stays below `min_inliers`, the pair is matched again against
the second image's keypoints as they would be in its mirror image (`mirror`: x negated, each
128-d descriptor's bins permuted by MIRROR_PERMUTATION, no second extraction); a pass there
is a duplicate with `mirrored` true.

Images are scaled down so their longer side is at most `VerifySettings.max_side` (never up)
and keep their `n_features` (500) strongest keypoints. Two settings, by what is compared:

- `COPIES` (192 px; `artenc.dedup`): edited copies of one image file, the work filling both.
  On 800 WikiArt dev works and 200 edited copies of 10 kinds, 20 of them mirrored
  (scripts/bench_neardup.py), 12.5x faster cold than LEGACY (13 s against 164 s on 2 busy
  cores), precision 1.000 both, recall 0.965 against 0.875, mirrored copies 20/20 against 0/20.
  Small images also keep two different paintings in identical gilt frames apart (LEGACY
  paired two such museum photos).
- `PHOTOS` (512 px; `artenc.neighbors.similar(verify=True)`): photographs of a work, which
  may fill half of the photo beside its wall and frame; at 192 px museum queries of that kind
  (../shared/data/museum qsd2_w2) fall from top-1 0.90 to 0.80, at 512 px they keep 0.90,
  1.6x faster than LEGACY.

`LEGACY` is the setting used up to issue 15 (512 px, smaller images scaled up, 1,500
keypoints, RANSAC, no mirrors).

Keypoints are extracted once per image content and settings, and cached in the store's
keypoints folder (`Store.keypoints_dir`) as ``<cache_version>/<sha256>.npz``, cache_version
e.g. ``sift-v2-192-500`` (arrays only: ``xy`` float32 (n, 2) in pixels of the scaled image,
``desc`` uint8 (n, 128); loaded with allow_pickle=False); ``sift-v1-512`` folders of older
versions are not read. Extraction and matching run in worker processes (loky, joblib's
executor; OpenCV single-threaded in each).

Sources: Lowe, "Distinctive image features from scale-invariant keypoints", IJCV 2004 (SIFT,
ratio test); Barath et al., "MAGSAC++", CVPR 2020 (OpenCV's USAC_MAGSAC); Fischler & Bolles
1981 (RANSAC); OpenCV's SIFT descriptor layout (modules/features2d/src/sift.simd.hpp).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from joblib.externals.loky import get_reusable_executor

from artenc.atomic import atomic_path
from artenc.defaults import MIN_INLIERS
from artenc.errors import ParameterError
from artenc.images import ImageLoadError, load_image
from artenc.search import limit_threads

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger(__name__)
WORKER_IDLE_SECONDS = 30  # idle verification workers exit after this (loky reuses them until then)

RATIO = 0.75  # Lowe's ratio test (Lowe 2004)
REPROJECTION_PX = 5.0  # inlier distance (pixels)
MIN_DET = 0.01  # area scale of an accepted homography: between 1/100 and 100
CHUNK = 64
METHODS = ("magsac", "ransac")


def _mirror_permutation() -> np.ndarray:
    """(128,) int64: descriptor bin i of a mirrored image is bin MIRROR_PERMUTATION[i] of the original.

    OpenCV's SIFT descriptor is 4 x 4 spatial cells x 8 orientation bins, index
    (row * 4 + col) * 8 + bin, in the keypoint's frame (x along its orientation, bins of 45
    degrees relative to it). Mirroring the image left to right maps an orientation t to
    180 - t, so in the keypoint's own frame the patch is reflected about its x axis: rows
    reverse (row -> 3 - row), columns stay, relative angles negate (bin -> -bin mod 8).
    Checked against descriptors of the flipped image (tests/test_verify.py).
    """
    return np.array([((3 - r) * 4 + c) * 8 + (8 - o) % 8 for r in range(4) for c in range(4) for o in range(8)])


MIRROR_PERMUTATION = _mirror_permutation()


@dataclass(frozen=True)
class VerifySettings:
    """How images are verified; the extraction part names the keypoint cache folder.

    Attributes:
        max_side: longest side of the image keypoints are extracted from (px); larger
            images are scaled down (INTER_AREA).
        upscale: also scale smaller images up to max_side (INTER_CUBIC; LEGACY only: it
            costs ~5x the extraction time on 224 px images and found no more copies).
        n_features: keypoints kept per image, the strongest by DoG response (OpenCV's
            SIFT nfeatures).
        ratio: Lowe's ratio test (nearest / second nearest descriptor distance).
        reprojection_px: inlier distance in pixels of the second image.
        method: "magsac" (cv2.USAC_MAGSAC, MAGSAC++) or "ransac" (cv2.RANSAC).
        mirror: also match the mirror image of the second image (module docstring).
    """

    max_side: int = 192
    upscale: bool = False
    n_features: int = 500
    ratio: float = RATIO
    reprojection_px: float = REPROJECTION_PX
    method: str = "magsac"
    mirror: bool = True

    def __post_init__(self) -> None:
        if self.max_side < 16:
            raise ParameterError("max_side", f"must be >= 16 pixels, got {self.max_side}")
        if self.n_features < 4:
            raise ParameterError("n_features", f"must be >= 4, got {self.n_features}")
        if not 0 < self.ratio <= 1:
            raise ParameterError("ratio", f"must be in (0, 1], got {self.ratio}")
        if self.method not in METHODS:
            raise ParameterError("method", f"{self.method!r}: choose one of {', '.join(METHODS)}")

    @property
    def cache_version(self) -> str:
        """Folder name of the keypoint cache: what extraction depends on (e.g. "sift-v2-192-500")."""
        return f"sift-v2-{self.max_side}{'up' if self.upscale else ''}-{self.n_features}"

    def describe(self) -> str:
        """One line: side, keypoints, estimator, mirrors."""
        return (f"{self.max_side} px{' (up)' if self.upscale else ''}, {self.n_features} keypoints, "
                f"{self.method}, {'mirror-aware' if self.mirror else 'no mirrors'}")


COPIES = VerifySettings()  # edited copies of one file (dedup); the module docstring says why
PHOTOS = VerifySettings(max_side=512)  # photographs of a work (similar with verification)
LEGACY = VerifySettings(max_side=512, upscale=True, n_features=1500, method="ransac", mirror=False)


@dataclass(frozen=True)
class Keypoints:
    """Keypoint positions (n, 2) float32 (pixels of the scaled image) and SIFT descriptors (n, 128) uint8."""

    xy: np.ndarray
    desc: np.ndarray


@dataclass(frozen=True)
class Match:
    """Inliers of one pair, and whether they were found against the mirror image of the second."""

    inliers: int
    mirrored: bool = False


@dataclass(frozen=True)
class PairMatches:
    """`verify_pairs`'s answer: (p,) int64 inliers and (p,) bool mirrored, one per pair."""

    inliers: np.ndarray
    mirrored: np.ndarray


def _cv2():
    import cv2

    cv2.setNumThreads(1)
    return cv2


def _empty() -> Keypoints:
    return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8))


def sift(gray: np.ndarray, n_features: int) -> Keypoints:
    """SIFT keypoints of a (h, w) uint8 gray image (OpenCV, `n_features` strongest), descriptors as uint8."""
    cv2 = _cv2()
    kps, desc = cv2.SIFT_create(nfeatures=n_features).detectAndCompute(gray, None)
    if desc is None or not kps:
        return _empty()
    xy = np.array([k.pt for k in kps], dtype=np.float32)
    return Keypoints(xy, np.clip(np.rint(desc), 0, 255).astype(np.uint8))


def extract(path: str | os.PathLike, settings: VerifySettings = COPIES) -> Keypoints:
    """SIFT keypoints of one image file, scaled as `settings` say; none for an unreadable file."""
    cv2 = _cv2()
    try:
        img = load_image(path, draft_size=settings.max_side)
    except ImageLoadError as exc:
        log.warning("verification skips %s", exc)
        return _empty()
    gray = np.asarray(img.convert("L"))
    scale = settings.max_side / max(gray.shape)
    if scale < 1.0 or (scale > 1.0 and settings.upscale):
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return sift(gray, settings.n_features)


def mirror(kp: Keypoints) -> Keypoints:
    """The keypoints of the mirror image (left-right): x negated, descriptors permuted.

    x -> -x is the flip about x = 0 rather than about the image's centre line: the two differ
    by a translation, which a homography absorbs, so no image width is needed.
    """
    return Keypoints(kp.xy * np.array([-1.0, 1.0], dtype=np.float32), kp.desc[:, MIRROR_PERMUTATION])


def _ratio_matches(da: np.ndarray, db: np.ndarray, ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test on exact L2 nearest neighbours (what cv2.BFMatcher(NORM_L2).knnMatch
    with k=2 computes, through one float32 matrix product: ~1.5x faster than OpenCV's loop)."""
    a, b = da.astype(np.float32), db.astype(np.float32)
    d2 = np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)  # + |a|^2 per row, added below
    rows = np.arange(len(a))
    best = np.argmin(d2, axis=1)
    first = d2[rows, best].copy()
    d2[rows, best] = np.inf
    second = d2.min(axis=1)
    norm_a = np.einsum("ij,ij->i", a, a)
    first = np.sqrt(np.maximum(first + norm_a, 0.0))
    second = np.sqrt(np.maximum(second + norm_a, 0.0))
    good = first < ratio * second
    return rows[good], best[good]


def count_inliers(a: Keypoints, b: Keypoints, settings: VerifySettings = COPIES) -> int:
    """Matches passing the ratio test that agree on one homography from a to b (0 if < 4 matches).

    Direct matches only (`match` adds the mirror image). Returns distinct keypoint positions
    among the inliers (SIFT puts several orientations on one spot), 0 when the homography
    collapses, blows up or mirrors areas (|det| of its linear part outside [1/100, 100]).
    """
    if len(a.desc) < 2 or len(b.desc) < 2:
        return 0
    cv2 = _cv2()
    query, train = _ratio_matches(a.desc, b.desc, settings.ratio)
    if len(query) < 4:
        return 0
    src = a.xy[query].reshape(-1, 1, 2)
    dst = b.xy[train].reshape(-1, 1, 2)
    method = cv2.USAC_MAGSAC if settings.method == "magsac" else cv2.RANSAC
    homography, mask = cv2.findHomography(src, dst, method, settings.reprojection_px)
    if homography is None or mask is None:
        return 0
    det = float(np.linalg.det(homography[:2, :2]))
    if not MIN_DET <= det <= 1.0 / MIN_DET:  # a collapsed or mirrored mapping is no copy
        return 0
    keep = mask.ravel().astype(bool)
    n_src = len(np.unique(np.rint(src[keep, 0]), axis=0))
    n_dst = len(np.unique(np.rint(dst[keep, 0]), axis=0))
    return int(min(n_src, n_dst))


def match(a: Keypoints, b: Keypoints, min_inliers: int = MIN_INLIERS, settings: VerifySettings = COPIES) -> Match:
    """Inliers of a against b, and against b's mirror image when the direct match has fewer
    than `min_inliers` (and settings.mirror): the mirrored count is kept when it is larger."""
    direct = count_inliers(a, b, settings)
    if direct >= min_inliers or not settings.mirror:
        return Match(direct)
    flipped = count_inliers(a, mirror(b), settings)
    return Match(flipped, True) if flipped > direct else Match(direct)


class KeypointCache:
    """Keypoints per image content (sha256) in `folder`/settings.cache_version/; npz, no pickle.

    `folder` is a store's `keypoints_dir` (the store owns where its caches live).
    """

    def __init__(self, folder: str | os.PathLike, settings: VerifySettings = COPIES) -> None:
        self.dir = Path(folder) / settings.cache_version

    def path(self, sha256: str) -> Path:
        return self.dir / f"{sha256}.npz"

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def load(self, sha256: str) -> Keypoints:
        with np.load(self.path(sha256), allow_pickle=False) as z:
            return Keypoints(z["xy"], z["desc"])

    def save(self, sha256: str, kp: Keypoints) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(sha256)) as tmp:
            np.savez(tmp, xy=kp.xy, desc=kp.desc)


# ----- worker functions (module level so worker processes can import them) ----------
def _extract_job(args: tuple[str, VerifySettings, list[tuple[str, str]]]) -> int:
    folder, settings, jobs = args
    cache = KeypointCache(folder, settings)
    for path, sha in jobs:
        cache.save(sha, extract(path, settings))
    return len(jobs)


@lru_cache(maxsize=256)
def _cached(folder: str, settings: VerifySettings, sha: str) -> Keypoints:
    return KeypointCache(folder, settings).load(sha)


def _match_job(args: tuple[str, VerifySettings, int, list[tuple[str, str]]]) -> list[tuple[int, bool]]:
    folder, settings, min_inliers, pairs = args
    with limit_threads(1):  # worker processes share the cores: one BLAS thread each
        out = []
        for a, b in pairs:
            m = match(_cached(folder, settings, a), _cached(folder, settings, b), min_inliers, settings)
            out.append((m.inliers, m.mirrored))
        return out


def _run(fn, jobs: list, workers: int) -> list:
    """`fn` over `jobs` in `workers` processes (in this process for 0 workers or one job).

    The processes come from loky (joblib's reusable executor), not `multiprocessing`'s spawn:
    loky workers never re-run the caller's `__main__`, so a plain script or notebook that
    calls `Collection.duplicates()` needs no `if __name__ == "__main__":` guard, and they do
    not inherit threads through fork. Idle workers exit after WORKER_IDLE_SECONDS.
    """
    if workers <= 0 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    pool = get_reusable_executor(max_workers=min(workers, len(jobs)), timeout=WORKER_IDLE_SECONDS)
    return list(pool.map(fn, jobs))


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def ensure_keypoints(store: Store, rows: Sequence[int], workers: int | None = None,
                     settings: VerifySettings = COPIES) -> None:
    """Extract and cache keypoints of the given item rows that are not cached yet."""
    items = store.items
    cache = KeypointCache(store.keypoints_dir, settings)
    todo = {}
    for r in rows:
        sha = items.at[int(r), "sha256"]
        if sha not in todo and not cache.has(sha):
            todo[sha] = items.at[int(r), "path"]
    if not todo:
        return
    log.info("extracting SIFT keypoints of %d images (cached in %s)", len(todo), cache.dir)
    pairs = [(p, s) for s, p in todo.items()]
    _run(_extract_job, [(str(store.keypoints_dir), settings, pairs[i:i + CHUNK]) for i in range(0, len(pairs), CHUNK)],
         default_workers() if workers is None else workers)


def verify_pairs(store: Store, left: np.ndarray, right: np.ndarray, workers: int | None = None, *,
                 min_inliers: int = MIN_INLIERS, settings: VerifySettings = COPIES) -> PairMatches:
    """Inliers for item pairs (left[p], right[p]), mirror-aware (`match`); keypoints cached in the store.

    Args:
        store: the store (item paths and sha256; its keypoints folder is the cache).
        left, right: (p,) store rows.
        workers: processes (default: one per core, at most 8; 0 = this process).
        min_inliers: a direct match with this many inliers is not tried mirrored.
        settings: `VerifySettings` (COPIES; LEGACY for the pre-issue-15 behaviour).

    Returns:
        `PairMatches`: (p,) int64 inliers and (p,) bool mirrored, in the order of the pairs.
    """
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if len(left) == 0:
        return PairMatches(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    workers = default_workers() if workers is None else workers
    ensure_keypoints(store, np.unique(np.concatenate([left, right])), workers, settings)
    sha = store.items["sha256"].to_numpy()
    order = np.lexsort((right, left))  # pairs sharing an image land in the same chunk
    pairs = [(sha[left[p]], sha[right[p]]) for p in order]
    size = max(CHUNK, len(pairs) // (4 * max(workers, 1)) + 1)
    chunks = [(str(store.keypoints_dir), settings, int(min_inliers), pairs[i:i + size])
              for i in range(0, len(pairs), size)]
    found = [m for chunk in _run(_match_job, chunks, workers) for m in chunk]
    inliers, mirrored = np.empty(len(pairs), dtype=np.int64), np.empty(len(pairs), dtype=bool)
    inliers[order] = [m[0] for m in found]
    mirrored[order] = [m[1] for m in found]
    return PairMatches(inliers, mirrored)


def _query_job(args: tuple[str, VerifySettings, int, str, list[str]]) -> list[int]:
    folder, settings, min_inliers, query_path, shas = args
    q = extract(query_path, settings)
    with limit_threads(1):
        return [match(q, _cached(folder, settings, s), min_inliers, settings).inliers for s in shas]


def verify_queries(
    store: Store, query_paths: Sequence[str], rows: Sequence[Sequence[int]], workers: int | None = None, *,
    min_inliers: int = MIN_INLIERS, settings: VerifySettings = PHOTOS,
) -> list[np.ndarray]:
    """Inlier counts (mirror-aware, `match`) between each query image (in the store or not) and
    its candidate rows: one (len(rows[q]),) int64 array per query. Default `PHOTOS` settings
    (a query is often a photograph of the work with its surroundings)."""
    workers = default_workers() if workers is None else workers
    flat = [int(r) for rs in rows for r in rs]
    if not flat:
        return [np.zeros(0, dtype=np.int64) for _ in rows]
    ensure_keypoints(store, flat, workers, settings)
    sha = store.items["sha256"].to_numpy()
    jobs = [(str(store.keypoints_dir), settings, int(min_inliers), str(q), [sha[int(r)] for r in rs])
            for q, rs in zip(query_paths, rows, strict=True)]
    return [np.asarray(c, dtype=np.int64) for c in _run(_query_job, jobs, workers)]
