"""Sharded embedding: the split (stable, disjoint, covering), several writers on one store,
4 shard processes with 2 of them killed once and re-run, then merged == one plain run."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artenc.cli import main as cli_main
from artenc.embedding import embed_folders
from artenc.errors import ParameterError, StoreError
from artenc.shards import Shard, parse_shard, shard_of
from artenc.store import Store
from tests.conftest import write_gallery
from tests.helpers_store import SIGNATURE, toy_rows, toy_writer

REPO = Path(__file__).resolve().parents[1]
relpaths = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


# ----- the split ------------------------------------------------------------------------
def test_shard_of_is_a_fixed_function_of_the_path() -> None:
    # golden values: a change of the hash would move files between the shards of a running job
    assert [shard_of(p, 16) for p in ("a.jpg", "b/c.png", "ré/été.jpg", "x" * 300)] == [9, 14, 6, 5]
    digest = hashlib.blake2b(b"b/c.png", digest_size=8).digest()
    assert shard_of("b/c.png", 7) == int.from_bytes(digest, "big") % 7 == 3


def test_shard_of_is_the_same_in_other_processes() -> None:
    paths = [f"folder{i % 3}/work_{i:04d}.jpg" for i in range(50)] + ["ünï/çødé.png"]
    here = [shard_of(p, 5) for p in paths]
    code = "import json,sys; from artenc.shards import shard_of; print(json.dumps([shard_of(p, 5) for p in json.load(sys.stdin)]))"
    for seed in ("1", "2"):  # Python's own hash() would differ between these
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(paths), capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO / "src")})
        assert json.loads(out.stdout) == here


@settings(max_examples=60, deadline=None)
@given(st.lists(relpaths, max_size=30, unique=True), st.integers(1, 12))
def test_shards_are_disjoint_and_cover_every_path(paths: list[str], n: int) -> None:
    owners = {p: [i for i in range(n) if Shard(i, n).owns(p)] for p in paths}
    assert all(len(o) == 1 for o in owners.values())
    assert sorted(p for i in range(n) for p in paths if Shard(i, n).owns(p)) == sorted(paths)


@settings(max_examples=40, deadline=None)
@given(st.integers(-3, 20), st.integers(-3, 20))
def test_parse_shard_accepts_exactly_0_le_i_lt_n(i: int, n: int) -> None:
    if n >= 1 and 0 <= i < n:
        assert parse_shard(f"{i}/{n}") == parse_shard((i, n)) == Shard(i, n)
    else:
        for value in (f"{i}/{n}", (i, n)):
            with pytest.raises(ParameterError) as err:
                parse_shard(value)
            assert err.value.param == "shard"


@pytest.mark.parametrize("value", ["1", "1/2/3", "a/b", "", "auto-ish", (True, 2), (1.0, 2), [0], 3])
def test_parse_shard_refuses_other_values(value) -> None:
    with pytest.raises(ParameterError, match="^shard "):
        parse_shard(value)


def test_parse_shard_auto_reads_the_slurm_array() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "16", "SLURM_ARRAY_TASK_MIN": "0"}
    assert parse_shard("auto", env) == Shard(7, 16)
    assert parse_shard("auto", {**env, "SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "1"}) == Shard(7, 16)
    with pytest.raises(ParameterError, match="SLURM array job"):
        parse_shard("auto", {})
    with pytest.raises(ParameterError, match="0 <= I < N"):
        parse_shard("auto", {**env, "SLURM_ARRAY_TASK_ID": "16"})  # e.g. --array=0-30:2


def test_bad_shard_fails_before_any_work(tmp_path: Path, caplog) -> None:
    with pytest.raises(ParameterError, match="^shard needs 0 <= I < N"):
        embed_folders([tmp_path / "nowhere"], tmp_path / "s", shard="4/4")
    assert cli_main(["embed", str(tmp_path), "--out", str(tmp_path / "s"), "--shard", "1/0"]) == 2
    assert "--shard needs N >= 1 jobs, got 1/0" in caplog.text
    assert not (tmp_path / "s").exists()


# ----- several writers on one store -----------------------------------------------------
def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=toy_writer, args=(str(tmp_path / "s"), tag, 6, barrier)) for tag in "abcd"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = Store.open(tmp_path / "s")
    assert len(store) == 4 * 6 * 3 and store.items["path"].is_unique
    tags = store.items["path"].str.split("/").str[2].str[0]
    np.testing.assert_array_equal(store.vectors[:, 0], tags.map(ord).to_numpy(np.float32))
    assert not any((tmp_path / "s" / "writers").iterdir())


def test_compaction_waits_for_other_writers(tmp_path: Path) -> None:
    a = Store.create(tmp_path / "s", SIGNATURE)
    b = Store.open(tmp_path / "s")
    for tag in "xy":
        a.append_segment(toy_rows(tag, 2), np.ones((2, 4), np.float32))
    with a.writing():
        assert b.other_writers() == 1 and a.other_writers() == 0
        b.compact()
        assert len(b.segment_ids()) == 2  # not compacted under a writer
        with pytest.raises(StoreError, match="still running"):
            b.merge()
    b.compact()
    assert len(b.segment_ids()) == 1 and len(b.reload()) == 4


def test_a_killed_writer_does_not_block_compaction(tmp_path: Path) -> None:
    Store.create(tmp_path / "s", SIGNATURE)
    code = (f"import time; from artenc.store import Store; s = Store.open({str(tmp_path / 's')!r}); "
            "s.start_writing(); print('ready', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.readline().strip() == "ready"
    store = Store.open(tmp_path / "s")
    assert store.other_writers() == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.other_writers() == 0  # the kernel freed its lock; its mark is removed
    assert not any((tmp_path / "s" / "writers").iterdir())


# ----- embedding in shards --------------------------------------------------------------
def test_a_shard_removes_only_its_own_vanished_files(tmp_path: Path, lite0_torch_encoder) -> None:
    images = tmp_path / "images"
    paths = write_gallery(images, 8, 0, size=(64, 64))
    out = tmp_path / "s"
    embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False)
    owner = {p: shard_of(p.relative_to(images).as_posix(), 2) for p in paths}
    gone = [next(p for p in paths if owner[p] == i) for i in (0, 1)]
    for p in gone:
        p.unlink()
    r0 = embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard=(0, 2))
    assert r0.removed_files == [str(gone[0])] and r0.discovered == sum(owner[p] == 0 for p in paths) - 1
    assert r0.unchanged == r0.discovered and r0.embedded == 0
    assert str(gone[1]) in set(Store.open(out).items["path"])  # shard 1's: not shard 0's to remove
    status = Store.open(out).shard_status()
    assert status["finished"] == [0] and status["not_started"] == [1] and not status["complete"]
    assert [(s["index"], s["state"], s["discovered"], s["removed"]) for s in status["per_shard"]] == [
        (0, "finished", r0.discovered, 1)]
    with pytest.raises(StoreError, match="shards 1 of 2 have not finished"):
        Store.open(out).merge()
    embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard="1/2")
    merged = Store.open(out).merge()
    assert merged.complete and merged.shards == 2 and merged.segments == 1 and merged.count == 6
    info = Store.open(out).summary()
    assert info["shards"]["merged"] and info["last_embed"]["outcomes"]["removed"] == 2
    assert info["last_embed"]["outcomes"]["discovered"] == 6
    embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False)  # a plain run
    assert "shards" not in Store.open(out).summary()  # supersedes the shard records


def _committed_shards(store: Path, n: int, seen: dict[str, set[int]]) -> set[int]:
    """Shards with at least one committed segment in `store` (by the relpaths of its rows);
    `seen` caches what each segment held (a committed segment never changes)."""
    seg = store / "segments"
    for p in seg.glob("seg-*.parquet") if seg.is_dir() else []:
        if p.name not in seen:
            try:
                seen[p.name] = {shard_of(r, n) for r in pd.read_parquet(p, columns=["relpath"])["relpath"]}
            except (OSError, ValueError):
                continue
    return set().union(*seen.values())


def test_four_shard_processes_two_killed_then_rerun_equal_one_run(tmp_path: Path, lite0_torch_encoder) -> None:
    images = tmp_path / "images"
    # ~30 files a shard, one committed segment per file: a shard is killed at its first segment,
    # long before its last, however fast the machine
    write_gallery(images / "a", 60, 0, size=(72, 64))
    write_gallery(images / "b", 60, 60, size=(64, 72), fmt="PNG")
    n = 120
    cmd = [sys.executable, "-m", "artenc.cli", "embed", str(images), "--batch-size", "1", "--flush-every", "1",
           "--workers", "0", "--runtime", "torch", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    sharded, single = tmp_path / "sharded", tmp_path / "single"

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen([*cmd, "--out", str(sharded), "--shard", f"{i}/4"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    procs = {i: start(i) for i in range(4)}  # 4 processes create and fill one store at once
    killed: list[int] = []
    seen: dict[str, set[int]] = {}
    deadline = time.monotonic() + 240
    while len(killed) < 2 and time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
        for i in sorted(_committed_shards(sharded, 4, seen) - set(killed)):
            if len(killed) < 2 and procs[i].poll() is None:  # mid-run: a segment committed, more to come
                procs[i].send_signal(signal.SIGKILL)
                killed.append(i)
        time.sleep(0.05)
    for p in procs.values():
        p.wait()
    assert len(killed) == 2, "shards finished before two could be killed; make the job bigger"
    assert all(procs[i].returncode == 0 for i in set(range(4)) - set(killed))
    share = {i: sum(shard_of(p.relative_to(images).as_posix(), 4) == i for p in images.rglob("*.*")) for i in range(4)}
    held = Store.open(sharded).items["relpath"].map(lambda r: shard_of(r, 4)).value_counts()
    assert all(0 < held.get(i, 0) < share[i] for i in killed), "killed after their share was done"
    assert all(held.get(i, 0) == share[i] for i in set(range(4)) - set(killed))
    status = Store.open(sharded).shard_status()
    assert status["unfinished"] == sorted(killed) and not status["complete"]
    assert cli_main(["store", "merge", str(sharded)]) == 2  # refused: two shards have not finished

    reruns = {i: start(i) for i in killed}  # re-run the killed shards (at once, again one store)
    reports = {i: json.loads(p.communicate()[0]) for i, p in reruns.items()}
    assert all(p.returncode == 0 for p in reruns.values())
    assert all(r["unchanged"] > 0 and r["unchanged"] + r["embedded"] == r["discovered"] for r in reports.values())
    assert cli_main(["store", "merge", str(sharded), "--json"]) == 0

    # the single run: in this process (saves starting torch once more; the vectors of the torch
    # runtime do not depend on the batch or the thread count beyond ~3e-7)
    embed_folders([images], single, encoder=lite0_torch_encoder, batch_size=8, workers=0, progress=False)
    a, b = Store.open(sharded), Store.open(single)
    assert len(a) == len(b) == n and a.items["path"].is_unique and len(a.segment_ids()) == 1
    assert a.items["path"].tolist() == b.items["path"].tolist()
    assert a.items["sha256"].tolist() == b.items["sha256"].tolist()
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6, rtol=0)
    info = a.summary()
    assert info["shards"]["complete"] and info["shards"]["merged"]
    outcomes = info["last_embed"]["outcomes"]
    assert outcomes["discovered"] == outcomes["embedded"] + outcomes["unchanged"] == n and outcomes["unchanged"] > 0


def test_embed_array_runs_the_shards_through_submitit_and_merges(tmp_path: Path, lite0_torch_encoder) -> None:
    from artenc.launch import embed_array

    images = tmp_path / "images"
    paths = write_gallery(images, 6, 0, size=(64, 64))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [p.name for p in paths], "style": [f"s{i % 2}" for i in range(6)]}).to_csv(labels, index=False)
    out = tmp_path / "s"
    # submitit's debug executor: the same submission, pickling and result path as on SLURM, in this process
    report = embed_array([images], out, shards=3, cluster="debug", folder=tmp_path / "jobs",
                         encoder=lite0_torch_encoder, workers=0, batch_size=2, labels=labels)
    assert len(report.job_ids) == 3 and sum(r["discovered"] for r in report.reports) == 6
    assert report.merge["complete"] and report.merge["shards"] == 3 and report.merge["count"] == 6
    store = Store.open(out)
    assert len(store) == 6 and store.summary()["shards"]["merged"] and len(store.segment_ids()) == 1
    # every shard wrote the labels of every image, whichever ended last
    assert store.items["style"].tolist() == [f"s{i % 2}" for i in range(6)]
    assert all(r["unmatched_labels"] == 0 for r in report.reports)
    with pytest.raises(ParameterError, match="^shards "):
        embed_array([images], out, shards=0, cluster="debug")


def test_device_cuda_k_is_checked() -> None:
    import torch

    from artenc.runtime import resolve_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for bad in ("cuda:x", f"cuda:{count}", "cuda:-1", "gpu"):
        with pytest.raises(ParameterError, match="^device "):
            resolve_device(bad)
    if count:
        assert resolve_device(f"cuda:{count - 1}") == "cuda" and torch.cuda.current_device() == count - 1


def test_a_shard_writes_the_labels_of_every_image(tmp_path: Path, lite0_torch_encoder) -> None:
    images = tmp_path / "images"
    paths = write_gallery(images, 6, 0, size=(64, 64))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [p.name for p in paths], "style": list("abcdef")}).to_csv(labels, index=False)
    report = embed_folders([images], tmp_path / "s", encoder=lite0_torch_encoder, workers=0, progress=False,
                           labels=labels, shard=(0, 2))
    # the other shard has not run: its images are not in the store, yet their label rows match
    assert report.discovered < 6 and report.unmatched_labels == 0
    assert sorted(Store.open(tmp_path / "s").labels["path"]) == sorted(map(str, paths))


def test_a_shard_of_another_count_is_refused_until_merged(tmp_path: Path, lite0_torch_encoder) -> None:
    """M7: shards 0/2 then 1/3 on one store would miss or repeat files; the second is refused
    (StoreError naming the other count) until the 2-way run is merged."""
    images = tmp_path / "images"
    write_gallery(images, 4, 0, size=(64, 64))
    out = tmp_path / "s"
    embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard=(0, 2))
    with pytest.raises(StoreError, match="unmerged records of shards of 2 jobs"):
        embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard=(1, 3))
    assert [r["count"] for r in Store.open(out).shard_records()] == [2]  # nothing recorded for 1/3
    embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard=(1, 2))
    Store.open(out).merge()
    r = embed_folders([images], out, encoder=lite0_torch_encoder, workers=0, progress=False, shard=(1, 3))
    assert r.embedded == 0  # every file is already in the store


def test_negative_looking_shard_reaches_the_check(tmp_path: Path, caplog) -> None:
    """M8: `--shard -1/2` is the value -1/2 (argparse alone says "expected one argument")."""
    assert cli_main(["embed", str(tmp_path), "--out", str(tmp_path / "s"), "--shard", "-1/2"]) == 2
    assert "--shard needs 0 <= I < N" in caplog.text and "expected one argument" not in caplog.text
    assert not (tmp_path / "s").exists()
