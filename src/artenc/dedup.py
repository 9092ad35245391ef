"""Near-duplicate groups, keepers, leakage across a label column, unique copies.

Pipeline (`find_duplicates`):

1. Candidate pairs (i < j, cosine >= threshold) by range search, never an n x n
   matrix: exact blocked products of the upper triangle up to AUTO_EXACT_MAX vectors
   (at most ~256 MB of scores at a time); above that exact products within spherical
   k-means cells, streamed from the store's files (`artenc.cells.cell_pairs`: a vector near
   a cell boundary is also listed in the cells a partner could be in, so no pair above the
   threshold is missed; SemDeDup's k-means join made exact). With verification, each
   work's top_m nearest neighbours with cosine >= floor are candidates too
   (`artenc.defaults`: DUPLICATE_TOP_M, DUPLICATE_FLOOR; above AUTO_EXACT_MAX among the
   works its cells compare it with).
2. Optional geometric verification (`artenc.verify`, on by default in the CLI): a
   candidate is a duplicate only with >= min_inliers inliers, found directly or against
   the mirror image of one of the two (then the pair is `mirrored`).
3. Groups without chaining: a group is a clique, every member is a duplicate of every
   other member. Greedy: the work with the most duplicates opens a group, its duplicates
   join in decreasing similarity when they are duplicates of all members already in.
   Works left over open their own groups in turn. So A~B and B~C never put A and C in one
   group unless A~C too.
4. Keeper: highest resolution (width x height), then the largest file, then the path that
   sorts first. Every other member is listed with its similarity to the keeper.
5. Every duplicate pair is also listed on its own (`DuplicateReport.pair_list`, the
   JSON's "pairs"): a clique grouping cannot show every pair (A~B, A~C, not B~C puts A in
   one group only), the list does.
6. What to drop (`DuplicateReport.representatives`, used by `copy_unique`): works in
   keeper order; a work is kept unless it is a duplicate of a work already kept, then it
   is dropped and stands for that work. So no two kept works were found to be duplicates,
   and every dropped work is a duplicate of a kept one. Greedy (a maximal independent set
   of the duplicate graph in keeper order; the smallest such cover is NP-hard): crops B, C
   of A give keep A, drop B and C; a chain A~B, B~C without A~C keeps A and C, drops B.

Identical content (the same sha256 in the store) is a duplicate at every threshold up to
1.0 with similarity exactly 1.0, and needs no verification (a flat picture has no SIFT
keypoints). Other similarities are compared with a threshold only through
`artenc.search.similarity_at_least` (it forgives float32 rounding).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from artenc.cells import cell_pairs
from artenc.defaults import (
    AUTO_EXACT_MAX,
    DUPLICATE_FLOOR,
    DUPLICATE_TOP_M,
    MIN_INLIERS,
    VERIFY_DUPLICATES,
    duplicate_threshold,
)
from artenc.errors import ParameterError, UsageError
from artenc.labels import is_missing
from artenc.search import (
    SCORE_BYTES,
    ArrayRows,
    Pairs,
    as_unit_matrix,
    check_pair_count,
    check_threshold,
    check_top_m,
    similar_pairs,
)
from artenc.verify import COPIES, VerifySettings, verify_pairs

if TYPE_CHECKING:
    from artenc.store import Store

log = logging.getLogger(__name__)

MAX_PAIRS = 20_000_000  # 20M pairs = 320 MB of (i, j, sim); a lower threshold is refused


def candidate_pairs(vectors: np.ndarray, threshold: float, *, exact: bool | None = None,
                    top_m: int = 0, floor: float | None = None) -> Pairs:
    """All pairs i < j with cosine >= threshold (exact up to AUTO_EXACT_MAX vectors by default).

    With `top_m` > 0, also every pair where one work is among the other's `top_m` nearest
    neighbours with cosine >= `floor` (the verified mode's candidate rule, see DUPLICATE_TOP_M).

    Args:
        vectors: (n, dim) float unit vectors (float32 used).
        threshold, floor: cosine similarities in [-1, 1] (floor is capped at threshold).
        exact: exact blockwise search (`artenc.search.similar_pairs`), or k-means cells
            (`artenc.cells.cell_pairs`: the same range pairs, fewer products; top-m pairs
            among the cells compared); None: exact up to AUTO_EXACT_MAX vectors.
        top_m: nearest neighbours per work that become candidates (0: off).

    Returns:
        `artenc.search.Pairs` (i < j, each pair once, float32 similarities).

    Raises:
        ParameterError: bad vectors, threshold, floor or top_m; a threshold so low that
        more than MAX_PAIRS pairs reach it.
    """
    x = as_unit_matrix(vectors)
    threshold = check_threshold(threshold)
    top_m = check_top_m(top_m)
    floor = threshold if floor is None else min(check_threshold(floor, "floor"), threshold)
    exact = len(x) <= AUTO_EXACT_MAX if exact is None else exact
    if exact:
        return similar_pairs(x, threshold, top_m=top_m, floor=floor, max_pairs=MAX_PAIRS, score_bytes=SCORE_BYTES)
    return cell_pairs(ArrayRows(x), threshold, top_m=top_m, floor=floor, max_pairs=MAX_PAIRS, progress=False)


def identical_pairs(sha256: Sequence[str | None] | np.ndarray, max_pairs: int | None = MAX_PAIRS) -> Pairs:
    """Every pair of rows i < j whose content hash is equal, with similarity 1.0.

    Args:
        sha256: (n,) content hashes (the store's "sha256" column); None/NaN is never equal.
        max_pairs: refuse (ParameterError("threshold")) beyond this many pairs.

    Returns:
        `Pairs` (int64 rows i < j, float32 similarities all exactly 1.0), by (i, j).
    """
    codes, _ = pd.factorize(pd.Series(sha256, dtype=object))
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    parts, count = [], 0
    for rows in np.split(order, bounds):
        if len(rows) < 2 or codes[rows[0]] < 0:
            continue
        a, b = np.triu_indices(len(rows), 1)
        count += len(a)
        check_pair_count(count, 1.0, max_pairs)
        parts.append((rows[a], rows[b], np.ones(len(a), np.float32)))
    pairs = Pairs.concat(parts)
    return pairs.select(np.lexsort((pairs.j, pairs.i)))


def _with_identical(pairs: Pairs, same: Pairs, n: int) -> tuple[Pairs, np.ndarray]:
    """`pairs` with the identical-content pairs `same` set to similarity 1.0 (added when
    missing); returns the pairs and a (p,) bool mask of the identical ones."""
    if not len(same):
        return pairs, np.zeros(len(pairs), dtype=bool)
    key, same_key = pairs.i * n + pairs.j, same.i * n + same.j
    identical = np.isin(key, same_key)
    pairs.sim[identical] = 1.0
    missing = ~np.isin(same_key, key)
    extra = same.select(missing)
    merged = Pairs.concat([(pairs.i, pairs.j, pairs.sim), (extra.i, extra.j, extra.sim)])
    return merged, np.concatenate([identical, np.ones(len(extra), dtype=bool)])


def keeper_order(items: pd.DataFrame) -> np.ndarray:
    """Rank of each item as a keeper (0 = best): resolution, then file size, then path."""
    pixels = items["width"].to_numpy(dtype=np.int64) * items["height"].to_numpy(dtype=np.int64)
    size = items["size"].to_numpy(dtype=np.int64) if "size" in items else np.zeros(len(items), np.int64)
    order = np.lexsort((items["path"].to_numpy(dtype=str), -size, -pixels))
    rank = np.empty(len(items), dtype=np.int64)
    rank[order] = np.arange(len(items))
    return rank


def representatives(pairs: Pairs, rank: np.ndarray) -> np.ndarray:
    """Which works to keep: for every row, the kept row that stands for it (itself when kept).

    Args:
        pairs: the duplicate pairs (rows i < j).
        rank: (n,) int64 keeper rank of every row (`keeper_order`, 0 = best).

    Returns:
        (n,) int64. Rows are visited in keeper order; a row that is a duplicate of an
        already kept row is dropped and maps to the best-ranked such row; otherwise it is
        kept. No two kept rows form a pair; every dropped row forms a pair with its keeper.
    """
    n = len(rank)
    out = np.arange(n, dtype=np.int64)
    if not len(pairs):
        return out
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(pairs.i.tolist(), pairs.j.tolist(), strict=True):
        adj[a].append(b)
        adj[b].append(a)
    kept = np.zeros(n, dtype=bool)
    for row in np.argsort(rank, kind="stable").tolist():
        keepers = [m for m in adj[row] if kept[m]]
        if keepers:
            out[row] = min(keepers, key=lambda m: rank[m])
        else:
            kept[row] = True
    return out


def clique_groups(pairs: Pairs, n: int) -> list[list[int]]:
    """Greedy non-chaining grouping (see module docstring); each group lists item rows."""
    adj: list[dict[int, float]] = [{} for _ in range(n)]
    for a, b, s in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.sim.tolist(), strict=True):
        adj[a][b] = s
        adj[b][a] = s
    degree = np.array([len(a) for a in adj])
    assigned = np.zeros(n, dtype=bool)
    groups = []
    for centre in np.lexsort((np.arange(n), -degree)):
        if degree[centre] == 0:
            break
        if assigned[centre]:
            continue
        members = [int(centre)]
        for cand, _ in sorted(adj[centre].items(), key=lambda kv: (-kv[1], kv[0])):
            if not assigned[cand] and all(cand in adj[m] for m in members[1:]):
                members.append(cand)
        if len(members) > 1:
            assigned[members] = True
            groups.append(members)
    return groups


def _match_doc(similarity: float, inliers: int | None, mirrored: bool) -> dict:
    """The JSON of how two works match: cosine (6 decimals), inliers when verified, and
    `"mirrored": true` only for a mirrored match."""
    doc: dict = {"similarity": round(float(similarity), 6)}
    if inliers is not None:
        doc["inliers"] = int(inliers)
    if mirrored:
        doc["mirrored"] = True
    return doc


@dataclass(frozen=True)
class Duplicate:
    """A group member that is not the keeper: its row, path, cosine similarity to the
    keeper (float in [-1, 1]), inliers against it (None when not verified) and whether
    they matched the mirror image (a left-right flipped copy; "mirrored": true in the JSON)."""

    row: int
    path: str
    similarity: float
    inliers: int | None = None
    mirrored: bool = False

    def to_dict(self) -> dict:
        return {"path": self.path, **_match_doc(self.similarity, self.inliers, self.mirrored)}


@dataclass(frozen=True)
class DuplicatePair:
    """One duplicate pair: `a` ranks before `b` as a keeper (store rows and paths), their
    cosine similarity (1.0 for identical content), inliers (None when not verified) and
    whether they matched mirrored (one is a left-right flip of the other; "mirrored": true
    in the JSON, absent otherwise)."""

    a: int
    a_path: str
    b: int
    b_path: str
    similarity: float
    inliers: int | None = None
    mirrored: bool = False

    def to_dict(self) -> dict:
        return {"a": self.a_path, "b": self.b_path, **_match_doc(self.similarity, self.inliers, self.mirrored)}


@dataclass(frozen=True)
class DuplicateGroup:
    """Works that are all duplicates of each other: the keeper and the others.

    Attributes:
        keep: the keeper's store row; `keep_path` its path.
        duplicates: the other members, by decreasing similarity to the keeper.
        sides: with `across`, the values of that label column the group spans.
    """

    keep: int
    keep_path: str
    duplicates: list[Duplicate]
    sides: list[str] | None = None

    @property
    def rows(self) -> list[int]:
        """Store rows of every member: the keeper first, then the others by row."""
        return [self.keep, *sorted(d.row for d in self.duplicates)]

    @property
    def paths(self) -> list[str]:
        """Paths of every member, in the order of `rows`."""
        return [self.keep_path, *(d.path for d in sorted(self.duplicates, key=lambda d: d.row))]

    def to_dict(self) -> dict:
        doc: dict = {"keep": self.keep_path, "duplicates": [d.to_dict() for d in self.duplicates]}
        if self.sides is not None:
            doc["sides"] = self.sides
        return doc


@dataclass(frozen=True)
class DuplicateReport:
    """Result of `find_duplicates`; `to_dict()` is the JSON document `artenc dedup` prints.

    Attributes:
        groups: `DuplicateGroup`s (cliques; see the module docstring).
        pairs: every duplicate pair found (store rows i < j, cosine, inliers when verified).
        threshold, top_m, floor, verified, min_inliers, across: the settings used.
        count: works in the store; candidate_pairs: pairs compared (or verified).
        paths: (n,) paths of the store's works; rank: (n,) int64 keeper rank (0 = best).
        mirrored: (p,) bool per pair of `pairs`, true where it matched mirrored (None: not verified).
    """

    groups: list[DuplicateGroup]
    pairs: Pairs
    threshold: float
    top_m: int
    floor: float | None
    verified: bool
    min_inliers: int | None
    across: str | None
    count: int
    candidate_pairs: int
    paths: np.ndarray
    rank: np.ndarray
    mirrored: np.ndarray | None = None

    @property
    def duplicate_pairs(self) -> int:
        return len(self.pairs)

    @property
    def representatives(self) -> np.ndarray:
        """(n,) int64: the kept row standing for each row, itself when kept (module docstring, 6)."""
        return representatives(self.pairs, self.rank)

    @property
    def duplicate_paths(self) -> set[str]:
        """Paths of the dropped works (what `copy_unique` leaves out): never two works found to
        be duplicates are both kept, and every dropped work is a duplicate of a kept one."""
        rep = self.representatives
        return {str(p) for p in self.paths[rep != np.arange(len(rep))]}

    @property
    def pair_list(self) -> list[DuplicatePair]:
        """Every duplicate pair, the better keeper first, by decreasing similarity (then keeper rank)."""
        out = []
        inliers = self.pairs.inliers
        for p, (i, j) in enumerate(zip(self.pairs.i.tolist(), self.pairs.j.tolist(), strict=True)):
            a, b = (i, j) if self.rank[i] <= self.rank[j] else (j, i)
            out.append(DuplicatePair(a, str(self.paths[a]), b, str(self.paths[b]), round(float(self.pairs.sim[p]), 6),
                                     None if inliers is None else int(inliers[p]),
                                     self.mirrored is not None and bool(self.mirrored[p])))
        out.sort(key=lambda d: (-d.similarity, self.rank[d.a], self.rank[d.b]))
        return out

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "top_m": self.top_m,
            "floor": self.floor,
            "verified": self.verified,
            "min_inliers": self.min_inliers,
            "across": self.across,
            "count": self.count,
            "candidate_pairs": self.candidate_pairs,
            "duplicate_pairs": self.duplicate_pairs,
            "groups": [g.to_dict() for g in self.groups],
            "pairs": [d.to_dict() for d in self.pair_list],
        }

    def table(self) -> pd.DataFrame:
        """One row per member: group, role (keep/duplicate), path, row, similarity to the keeper, inliers."""
        rows = []
        for g, group in enumerate(self.groups):
            rows.append({"group": g, "role": "keep", "path": group.keep_path, "similarity": 1.0, "inliers": None})
            for d in group.duplicates:
                rows.append({"group": g, "role": "duplicate", "path": d.path, "similarity": d.similarity,
                             "inliers": d.inliers})
        return pd.DataFrame(rows, columns=["group", "role", "path", "similarity", "inliers"])


def _make_groups(store: Store, pairs: Pairs, groups: list[list[int]], across: str | None,
                 rank: np.ndarray, mirrored: np.ndarray | None = None) -> list[DuplicateGroup]:
    items = store.items
    paths = items["path"].to_numpy()
    side = sides_of(items[across]) if across is not None else None
    lookup = {(a, b): p for p, (a, b) in enumerate(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))}
    out = []
    for members in groups:
        keep = min(members, key=lambda m: rank[m])
        dups = []
        for m in sorted((m for m in members if m != keep), key=lambda m: rank[m]):
            p = lookup.get((min(keep, m), max(keep, m)))
            if p is not None:
                sim = float(pairs.sim[p])
            else:
                a, b = store.vectors_at([keep, m])
                sim = float(a @ b)
            inl = int(pairs.inliers[p]) if pairs.inliers is not None and p is not None else None
            flip = mirrored is not None and p is not None and bool(mirrored[p])
            dups.append(Duplicate(int(m), str(paths[m]), round(sim, 6), inl, flip))
        dups.sort(key=lambda d: -d.similarity)
        sides = sorted({side[m] for m in members} - {None}) if side is not None else None
        out.append(DuplicateGroup(int(keep), str(paths[keep]), dups, sides))
    return out


def _leak_groups(store: Store, pairs: Pairs, groups: list[list[int]], column: str) -> list[list[int]]:
    """Groups with members on different sides of `column`, plus any cross pair split by grouping."""
    if column not in store.label_columns:
        raise ParameterError("across", f"{column!r}: no such label column (labels: {', '.join(store.label_columns) or 'none'})")
    side = sides_of(store.items[column])
    leaks = [g for g in groups if len({side[m] for m in g} - {None}) > 1]
    group_of = {m: gi for gi, g in enumerate(groups) for m in g}
    for a, b in zip(pairs.i.tolist(), pairs.j.tolist(), strict=True):
        if None not in (side[a], side[b]) and side[a] != side[b] and group_of.get(a, -1) != group_of.get(b, -2):
            leaks.append([a, b])
    return leaks


def sides_of(values: pd.Series) -> np.ndarray:
    """Each work's side of a label column as text, None where the label is missing
    (`labels.is_missing`): a work without a label is on no side."""
    side = values.astype(str).to_numpy(dtype=object)
    side[is_missing(values)] = None
    return side


def find_duplicates(
    store: Store,
    threshold: float | None = None,
    *,
    verify: bool = VERIFY_DUPLICATES,
    min_inliers: int = MIN_INLIERS,
    across: str | None = None,
    workers: int | None = None,
    exact: bool | None = None,
    top_m: int | None = None,
    floor: float | None = None,
    verify_settings: VerifySettings = COPIES,
) -> DuplicateReport:
    """Near-duplicate groups of a store (the pipeline in the module docstring).

    Args:
        store: the store.
        threshold: cosine similarity of range-search candidates, in [-1, 1] (default
            `artenc.defaults.duplicate_threshold(verify)`).
        verify: keep only candidates with >= `min_inliers` inliers (`artenc.verify`: SIFT
            + MAGSAC++ homography, mirror-aware; Lowe 2004, Barath et al. 2020).
        across: a label column; only groups spanning several of its values (leakage).
        workers: verification processes; exact: all-pairs products in memory (default: up to
            AUTO_EXACT_MAX works; above, `artenc.cells.cell_pairs` streamed from the store);
            top_m, floor: the verified mode's extra candidates.
        verify_settings: `artenc.verify.VerifySettings` (image size, keypoints, estimator,
            mirrors): COPIES by default; `artenc.verify.LEGACY` verifies as before issue 15.

    Returns:
        `DuplicateReport` with store rows and paths.

    Raises:
        UsageError: empty store; ParameterError: bad threshold, min_inliers, top_m, floor
        or an unknown `across` column.
    """
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    if min_inliers < 4:
        raise ParameterError("min_inliers", f"must be >= 4 (a homography needs 4 points), got {min_inliers}")
    if threshold is None:
        threshold = duplicate_threshold(verify)
    threshold = check_threshold(threshold)
    if across is not None and across not in store.label_columns:
        raise ParameterError("across", f"{across!r}: no such label column (labels: {', '.join(store.label_columns) or 'none'})")
    if top_m is None:
        top_m = DUPLICATE_TOP_M if verify else 0
    if floor is None:
        floor = DUPLICATE_FLOOR
    if (len(store) <= AUTO_EXACT_MAX if exact is None else exact):
        pairs = candidate_pairs(store.vectors, threshold, exact=True, top_m=top_m, floor=floor)
    else:  # streamed from the store's files, never every vector in memory
        pairs = cell_pairs(store, threshold, top_m=top_m, floor=min(floor, threshold), max_pairs=MAX_PAIRS)
    pairs, identical = _with_identical(pairs, identical_pairs(store.items["sha256"].to_numpy()), len(store))
    n_candidates = len(pairs)
    if top_m:
        log.info("%d candidate pairs (cosine >= %g, or among the %d nearest with cosine >= %g)",
                 n_candidates, threshold, top_m, min(floor, threshold))
    else:
        log.info("%d candidate pairs (cosine >= %g)", n_candidates, threshold)
    mirrored = None
    if verify and len(pairs):
        found = verify_pairs(store, pairs.i, pairs.j, workers=workers, min_inliers=min_inliers,
                             settings=verify_settings)
        pairs.inliers = found.inliers
        keep = (pairs.inliers >= min_inliers) | identical  # same bytes: a duplicate
        pairs, mirrored = pairs.select(keep), found.mirrored[keep] & ~identical[keep]
        log.info("%d of %d candidate pairs verified (>= %d inliers)", len(pairs), n_candidates, min_inliers)
    groups = clique_groups(pairs, len(store))
    if across is not None:
        groups = _leak_groups(store, pairs, groups, across)
    rank = keeper_order(store.items)
    return DuplicateReport(
        groups=_make_groups(store, pairs, groups, across, rank, mirrored), pairs=pairs, threshold=threshold, top_m=top_m,
        floor=min(floor, threshold) if top_m else None, verified=bool(verify),
        min_inliers=min_inliers if verify else None, across=across, count=len(store),
        candidate_pairs=n_candidates, paths=store.items["path"].to_numpy(), rank=rank, mirrored=mirrored,
    )


class CopyResult(int):
    """What `copy_unique` did: an int, the number of files copied (so `copy_unique(...) == n`
    keeps working), with `copied` (destination paths, str) and `skipped` ({"path", "reason"}:
    sources that vanished or could not be read or written)."""

    copied: list[str]
    skipped: list[dict]

    def __new__(cls, copied: list[str], skipped: list[dict]) -> CopyResult:
        result = super().__new__(cls, len(copied))
        result.copied, result.skipped = copied, skipped
        return result

    def to_dict(self) -> dict:
        return {"copied": len(self.copied), "copied_files": self.copied, "skipped_files": self.skipped}


def copy_unique(store: Store, report: DuplicateReport, out_dir: str | os.PathLike) -> CopyResult:
    """Copy every work except the report's non-keeper duplicates to `out_dir` (by relpath).

    Originals are never touched. A source that is gone or cannot be copied is skipped with
    its reason (no half-written copy is left) and copying goes on. Returns a `CopyResult`
    (an int: the number of files copied). Raises UsageError (ParameterError "out_dir") when
    `out_dir` would overwrite an original.
    """
    out = Path(out_dir).resolve()
    # a work whose file is gone is chosen as a keeper last: a deleted keeper's duplicate that
    # still exists stands for the picture, so the picture is not lost from the copy
    gone = np.array([not os.path.exists(p) for p in report.paths], dtype=bool)
    rep = representatives(report.pairs, report.rank + len(gone) * gone)
    dropped = {str(p) for p in report.paths[rep != np.arange(len(rep))]}
    items = store.items
    copied: list[str] = []
    skipped: list[dict] = []
    seen: set[Path] = set()
    for path, rel, sha in zip(items["path"], items["relpath"], items["sha256"], strict=True):
        if path in dropped:
            continue
        dst = out / rel
        if dst in seen:  # two roots with the same relative path
            dst = dst.with_name(f"{dst.stem}-{sha[:8]}{dst.suffix}")
        seen.add(dst)
        if not os.path.exists(path):
            skipped.append({"path": path, "reason": "file gone (re-run embed to update the store)"})
            continue
        if dst.exists() and os.path.samefile(dst, path):
            raise ParameterError("out_dir", f"{out_dir} would overwrite the original {path}; choose another folder")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half-written copy
                dst.unlink(missing_ok=True)
            skipped.append({"path": path, "reason": f"cannot copy ({exc.strerror or exc})"})
            continue
        copied.append(str(dst))
    return CopyResult(copied, skipped)
