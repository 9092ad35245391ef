"""`artenc embed` end to end: labels, incremental re-runs, bad files, kill + resume, parity, golden."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artenc.cli import main
from artenc.embedding import embed_folders, encode_files
from artenc.store import Store
from tests.conftest import painting, write_gallery
from tests.golden import GOLDEN, golden_image_path


def _run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_embed_cli_with_labels_and_info(gallery: Path, tmp_path: Path, capsys) -> None:
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "path": ["a/work_0000.jpg", str(gallery / "b" / "work_0006.png")],
            "style": ["Baroque", "Symbolism"],
        }
    ).to_csv(labels, index=False)
    store_dir = tmp_path / "store"
    code, report = _run_json(
        capsys,
        [
            "embed",
            str(gallery),
            "--out",
            str(store_dir),
            "--labels",
            str(labels),
            "--batch-size",
            "5",
            "--workers",
            "0",
            "--json",
        ],
    )
    assert code == 0 and report["embedded"] == 12 and report["skipped"] == 0
    store = Store.open(store_dir)
    assert store.vectors.shape == (12, 1280) and store.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(store.vectors, axis=1), 1.0, atol=1e-5)
    items = store.items.set_index("relpath")
    assert items.loc["a/work_0000.jpg", "style"] == "Baroque"
    assert items.loc["b/work_0006.png", "style"] == "Symbolism"
    assert (items.loc["a/work_0000.jpg", ["width", "height"]] == [320, 256]).all()
    assert len(set(store.items["sha256"])) == 12
    code, info = _run_json(capsys, ["info", str(store_dir), "--json"])
    assert code == 0 and info["count"] == 12 and info["dim"] == 1280
    assert (
        info["model"] == "tf_efficientnet_lite0"
        and info["skipped"] == 0
        and "style" in info["label_columns"]
    )


def test_incremental_rerun_embeds_only_new_or_changed(
    gallery: Path, tmp_path: Path, lite0_encoder
) -> None:
    out = tmp_path / "store"
    first = embed_folders([gallery], out, encoder=lite0_encoder, workers=0, progress=False)
    assert first.embedded == 12
    again = embed_folders([gallery], out, encoder=lite0_encoder, workers=0, progress=False)
    assert (again.embedded, again.unchanged, again.total) == (0, 12, 12)

    painting(999).save(gallery / "a" / "work_0001.jpg", "JPEG")  # changed content
    shutil.copy(
        gallery / "a" / "work_0002.jpg", gallery / "copy_of_2.jpg"
    )  # same content, new path
    write_gallery(gallery / "c", 2, 100)  # new files
    before = Store.open(out)
    old_vec = before.vectors[
        before.index_of([str(gallery / "a" / "work_0001.jpg")])[0]
    ].copy()
    third = embed_folders([gallery], out, encoder=lite0_encoder, workers=0, progress=False)
    assert (third.embedded, third.reused, third.unchanged, third.total) == (3, 1, 11, 15)
    store = Store.open(out)
    assert store.items["path"].is_unique
    i_changed, i_copy, i_orig = store.index_of(
        [
            str((gallery / p).resolve())
            for p in ("a/work_0001.jpg", "copy_of_2.jpg", "a/work_0002.jpg")
        ]
    )
    assert not np.allclose(store.vectors[i_changed], old_vec)
    np.testing.assert_array_equal(store.vectors[i_copy], store.vectors[i_orig])
    assert len(store.segment_ids()) == 1  # compacted


def _broken_files(folder: Path) -> dict[str, str]:
    """Write odd files; returns name -> expected fragment of the recorded reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    good = folder / "tmp_good.jpg"
    painting(7).save(good, "JPEG")
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:1200])
    good.unlink()
    (folder / "dangling.jpg").symlink_to(folder / "does_not_exist.jpg")
    return {
        "zero.jpg": "empty file",
        "text.png": "not an image",
        "truncated.jpg": "truncated",
        "dangling.jpg": "cannot read",
    }


def test_bad_files_are_skipped_and_recorded(gallery: Path, tmp_path: Path, capsys) -> None:
    expected = _broken_files(gallery / "broken")
    out = tmp_path / "store"
    code, report = _run_json(
        capsys, ["embed", str(gallery), "--out", str(out), "--workers", "1", "--json"]
    )
    assert code == 0 and report["embedded"] == 12 and report["skipped"] == 4
    code, info = _run_json(capsys, ["info", str(out), "--json"])
    reasons = {Path(s["path"]).name: s["reason"] for s in info["skipped_files"]}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name]


def test_exit_2_when_nothing_readable_or_bad_args(tmp_path: Path, caplog) -> None:
    _broken_files(tmp_path / "only_bad")
    assert (
        main(["embed", str(tmp_path / "only_bad"), "--out", str(tmp_path / "s"), "--workers", "0"])
        == 2
    )
    assert main(["embed", str(tmp_path / "missing"), "--out", str(tmp_path / "s2")]) == 2
    assert (
        main(
            [
                "embed",
                str(tmp_path / "only_bad"),
                "--out",
                str(tmp_path / "s3"),
                "--batch-size",
                "0",
            ]
        )
        == 2
    )
    assert main(["embed", str(tmp_path), "--out", str(tmp_path / "s4"), "--model", "nope"]) == 2
    labels = tmp_path / "l.csv"
    labels.write_text("file,style\nx.jpg,a\n")
    assert (
        main(["embed", str(tmp_path), "--out", str(tmp_path / "s5"), "--labels", str(labels)]) == 2
    )
    assert "no 'path' column" in caplog.text


def test_other_model_into_same_store_refused(gallery: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "store"
    assert main(["embed", str(gallery / "a"), "--out", str(out), "--workers", "0"]) == 0
    code = main(
        ["embed", str(gallery / "b"), "--out", str(out), "--model", "tf_efficientnet_lite1"]
    )
    assert code == 2
    assert "refusing to add vectors" in caplog.text
    assert len(Store.open(out)) == 6


def test_trim_borders_is_recorded_and_reused_for_queries(gallery: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    assert main(["embed", str(gallery / "a"), "--out", str(out), "--workers", "0", "--trim-borders"]) == 0
    meta = Store.open(out).meta
    assert meta["preprocess"]["trim_borders"] is True
    from artenc.runtime import encoder_for_store

    assert encoder_for_store(meta).preprocess.trim_borders is True
    assert main(["embed", str(gallery / "b"), "--out", str(out), "--workers", "0"]) == 2  # other preprocessing


def test_onnx_matches_torch(gallery: Path, lite0_encoder, lite0_torch_encoder) -> None:
    paths = sorted(gallery.rglob("*.*"))
    a, _ = encode_files(paths, lite0_encoder)
    b, _ = encode_files(paths, lite0_torch_encoder)
    assert np.abs(a - b).max() < 1e-4


def test_golden_embedding(tmp_path: Path, lite0_encoder, lite0_torch_encoder) -> None:
    expected = np.load(GOLDEN, allow_pickle=False)
    path = golden_image_path(tmp_path)
    for enc in (lite0_encoder, lite0_torch_encoder):
        vec, err = encode_files([path], enc)
        assert err == [None]
        np.testing.assert_allclose(vec[0], expected, atol=2e-4)


def _segments(store: Path) -> int:
    seg = store / "segments"
    return len(list(seg.glob("seg-*.parquet"))) if seg.is_dir() else 0


def test_kill_and_resume_matches_clean_run(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_gallery(images, 48, 0, size=(200, 160))
    cmd = [
        sys.executable,
        "-m",
        "artenc.cli",
        "embed",
        str(images),
        "--batch-size",
        "4",
        "--flush-every",
        "4",
        "--workers",
        "1",
        "--runtime",
        "torch",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _segments(killed) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "embedding finished before it could be killed; make the job bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    orphans = subprocess.run(["pgrep", "-f", f"--out {killed}$"], capture_output=True, text=True).stdout.split()
    assert orphans == [], "decoding workers outlived their killed parent"
    partial = len(Store.open(killed))
    assert 0 < partial < 48
    subprocess.run([*cmd, "--out", str(killed)], env=env, check=True, stderr=subprocess.DEVNULL)
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "--out", str(clean)], env=env, check=True, stderr=subprocess.DEVNULL)
    a, b = Store.open(killed), Store.open(clean)
    assert len(a) == len(b) == 48 and a.items["path"].is_unique
    assert a.items["path"].tolist() == b.items["path"].tolist()
    assert a.items["sha256"].tolist() == b.items["sha256"].tolist()
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


@pytest.mark.parametrize("batch_size,flush_every,sizes", [(2, 1, [2, 2, 1]), (2, 3, [4, 1]), (64, 8, [5])])
def test_flush_every_commits_whole_batches(tmp_path: Path, lite0_torch_encoder, batch_size, flush_every,
                                           sizes) -> None:
    """M4: a segment is committed at the end of the batch that brings the uncommitted images
    to flush_every or more: below the batch size, one segment per batch (a shard run keeps its
    segments: it does not compact)."""
    write_gallery(tmp_path / "g", 5, size=(64, 64))
    embed_folders([tmp_path / "g"], tmp_path / "s", encoder=lite0_torch_encoder, workers=0, progress=False,
                  batch_size=batch_size, flush_every=flush_every, shard=(0, 1))
    store = Store.open(tmp_path / "s")
    assert len(store) == 5
    segments = [np.load(store.segment_dir / f"seg-{s:06d}.npy", mmap_mode="r").shape[0] for s in store.segment_ids()]
    assert segments == sizes


def test_max_aspect_ratio_flag_and_skip_reasons_name_flags(tmp_path: Path, capsys, caplog) -> None:
    """`--max-aspect-ratio` lifts the thin-strip guard, and the skip reasons the CLI logs name the
    flag to raise (`--max-aspect-ratio`, `--max-pixels`), not the library's parameter."""
    folder = tmp_path / "img"
    folder.mkdir()
    painting(1).save(folder / "ok.png")
    painting(2, (1200, 300)).crop((0, 0, 1200, 10)).save(folder / "strip.png")  # 120:1, over the limit of 100
    store = tmp_path / "s"
    code, report = _run_json(capsys, ["embed", str(folder), "--out", str(store), "--workers", "0", "--json"])
    assert code == 0 and (report["embedded"], report["skipped"]) == (1, 1)
    assert "raise --max-aspect-ratio to allow it" in caplog.text
    assert "raise max_aspect_ratio" not in caplog.text
    capsys.readouterr()
    assert main(["info", str(store)]) == 0  # the stored skip reason, as `info` prints it
    text = capsys.readouterr().out
    assert "strip.png: " in text and "raise --max-aspect-ratio to allow it" in text
    assert "raise max_aspect_ratio" not in text
    caplog.clear()
    code, report = _run_json(capsys, ["embed", str(folder), "--out", str(store), "--workers", "0",
                                      "--max-aspect-ratio", "150", "--json"])
    assert code == 0 and (report["embedded"], report["unchanged"], report["skipped"]) == (1, 1, 0)
    assert "skipped" not in caplog.text
    code, report = _run_json(capsys, ["embed", str(folder), "--out", str(tmp_path / "s2"), "--workers", "0",
                                      "--max-pixels", "1000", "--json"])
    assert code == 2 and report["skipped"] == 2
    assert "raise --max-pixels to allow it" in caplog.text and "raise max_pixels" not in caplog.text
    assert main(["embed", str(folder), "--out", str(tmp_path / "s3"), "--max-aspect-ratio", "0.5"]) == 2
    assert "--max-aspect-ratio must be >= 1" in caplog.text
    assert not (tmp_path / "s3").exists()  # refused before any work


def test_embed_folders_max_aspect_ratio(tmp_path: Path, lite0_encoder) -> None:
    """The library's parameter: a strip is skipped under the default limit (the reason names
    the parameter), embedded with a higher one; a limit below 1 raises before any work."""
    from artenc.errors import ParameterError

    painting(2, (1200, 300)).crop((0, 0, 1200, 10)).save(tmp_path / "strip.png")  # 120:1
    report = embed_folders([tmp_path / "strip.png"], tmp_path / "s", encoder=lite0_encoder, workers=0, progress=False)
    assert report.skipped == 1 and "raise max_aspect_ratio to allow it" in report.skipped_files[0]["reason"]
    report = embed_folders([tmp_path / "strip.png"], tmp_path / "s", encoder=lite0_encoder, workers=0,
                           progress=False, max_aspect_ratio=None)
    assert report.embedded == 1
    with pytest.raises(ParameterError, match=r"^max_aspect_ratio must be >= 1"):
        embed_folders([tmp_path / "strip.png"], tmp_path / "s4", encoder=lite0_encoder, workers=0, progress=False,
                      max_aspect_ratio=0.5)
    assert not (tmp_path / "s4").exists()
