"""Every file of a real collection is accounted for (issue 12, cases 2-6).

Discovery by content (`images.scan_images`), file names that are not UTF-8, NFC label
matching (`labels.match_labels`), symlinked folders, vanished files (`Store.remove`),
`dedup.copy_unique` on missing sources, and the accounting invariant of `embed`.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from artenc.cli import main
from artenc.collection import Collection
from artenc.dedup import copy_unique, find_duplicates
from artenc.embedding import embed_folders
from artenc.images import display_path, name_problem, scan_images, sniff_image
from artenc.labels import match_labels, name_key
from artenc.store import REMOVED_ROW, ModelSignature, Store, l2_normalize
from tests.conftest import painting

BAD_NAME = b"\xff\xfe.jpg"  # not valid UTF-8
NFD_NAME = unicodedata.normalize("NFD", "Café.jpg")
NFC_NAME = unicodedata.normalize("NFC", "Café.jpg")


def _every_kind(root: Path) -> dict[str, list[str]]:
    """A folder holding every kind of file; returns outcome -> relative names (first run)."""
    (root / "real").mkdir(parents=True)
    painting(1).save(root / "real" / "a.jpg", "JPEG")
    with open(os.fsencode(root) + b"/" + BAD_NAME, "wb") as f:
        painting(2).save(f, "JPEG")
    painting(3).save(root / NFD_NAME, "JPEG")
    (root / "linked").symlink_to(root / "real")  # a second name of a scanned folder
    (root / "real" / "loop").symlink_to(root)  # a loop
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    painting(4).save(outside / "o.png", "PNG")
    (root / "outside").symlink_to(outside)  # a symlinked folder: followed
    painting(5).save(root / "p.jfif", "JPEG")
    painting(6).save(root / "p.avif", "AVIF")
    painting(7).save(root / "p.jpg_large", "JPEG")
    painting(8).save(root / "noext", "PNG")
    painting(9).save(root / "UP.JPEG", "JPEG")
    painting(1).save(root / "copy_of_a.png", "PNG")  # same picture, other bytes: embedded
    (root / "notes.txt").write_text("hello\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / ".hidden.jpg").write_bytes(b"x")
    (root / ".hidden").mkdir()
    painting(10).save(root / ".hidden" / "h.jpg", "JPEG")
    (root / "broken.jpg").write_text("not an image")
    painting(11).save(root / "gone.jpg", "JPEG")
    return {
        "embedded": ["real/a.jpg", NFD_NAME, "outside/o.png", "p.jfif", "p.avif", "p.jpg_large", "noext",
                     "UP.JPEG", "copy_of_a.png", "gone.jpg"],
        "skipped": ["broken.jpg", BAD_NAME.decode("utf-8", "backslashreplace")],
        "not_images": ["data.csv", "notes.txt"],
    }


# ----- discovery ---------------------------------------------------------------------------
def test_scan_images_by_content_symlinks_and_hidden(tmp_path: Path) -> None:
    root = tmp_path / "col"
    expected = _every_kind(root)
    os.mkfifo(root / "pipe")  # never opened: reading it would block
    found = scan_images([root])
    rel = sorted(display_path(p.relative_to(root)) for p in found.images)
    assert rel == sorted(expected["embedded"] + expected["skipped"])
    assert sorted(p.name for p in found.not_images) == ["data.csv", "notes.txt", "pipe"]
    reasons = {p.relative_to(root).as_posix(): why for p, why in found.skipped_folders}
    assert reasons == {"linked": f"same folder as {root / 'real'}, already scanned",
                       "real/loop": f"same folder as {root}, already scanned"}


def test_scan_images_prefers_real_folders_and_lists_unreadable_ones(tmp_path: Path) -> None:
    (tmp_path / "z_real").mkdir()
    painting(0).save(tmp_path / "z_real" / "x.png", "PNG")
    (tmp_path / "a_link").symlink_to(tmp_path / "z_real")  # sorts first, scanned second
    found = scan_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found.images] == ["z_real/x.png"]
    assert [p.name for p, _ in found.skipped_folders] == ["a_link"]
    if os.geteuid() != 0:  # root reads any folder
        (tmp_path / "locked").mkdir(mode=0)
        assert "cannot list folder" in dict(scan_images([tmp_path]).skipped_folders)[tmp_path / "locked"]


def test_sniff_image_reads_signatures_only(tmp_path: Path) -> None:
    painting(0).save(tmp_path / "png_without_ext", "PNG")
    (tmp_path / "text").write_text("P1 is the start of a PPM header and of this sentence\n")
    (tmp_path / "short").write_bytes(b"x")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    assert sniff_image(tmp_path / "png_without_ext") is True
    assert sniff_image(tmp_path / "text") is False
    assert sniff_image(tmp_path / "short") is False
    assert sniff_image(tmp_path / "empty") is False
    assert sniff_image(tmp_path / "dangling") is None


def test_display_path_and_name_problem() -> None:
    bad = os.fsdecode(b"/x/" + BAD_NAME)
    assert display_path(bad) == "/x/\\xff\\xfe.jpg" and display_path(bad).encode("utf-8")
    assert "not valid UTF-8" in name_problem(bad)
    assert display_path("/x/Café.jpg") == "/x/Café.jpg" and name_problem("/x/Café.jpg") is None


# ----- labels ---------------------------------------------------------------------------------
def test_match_labels_compares_names_after_nfc(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    image = str(tmp_path / "sub" / NFD_NAME)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": [NFC_NAME, f"sub/{NFC_NAME}", "ghost.jpg"], "style": ["x", "Baroque", "y"]}).to_csv(
        csv, index=False)
    matched = match_labels(csv, [tmp_path / "sub"], [image])
    assert matched.table["path"].tolist()[:2] == [image, image]
    assert matched.table["style"].tolist() == ["x", "Baroque", "y"]
    assert matched.unmatched == ["ghost.jpg"]
    assert name_key(NFD_NAME) == NFC_NAME != NFD_NAME


# ----- store ----------------------------------------------------------------------------------
def test_store_remove_drops_rows_and_vectors(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", ModelSignature("m", "f", {"size": 4}, 3))
    rows = pd.DataFrame({"path": ["/a", "/b", "/bad"], "relpath": ["a", "b", "bad"], "sha256": ["1", "2", "3"],
                         "size": [1, 2, 3], "mtime_ns": [10, 20, 30], "width": [1, 1, -1], "height": [1, 1, -1],
                         "error": [None, None, "corrupt"], "row": [0, 1, -1]})
    store.append_segment(rows, l2_normalize(np.eye(3, dtype=np.float32)[:2]))
    assert store.remove(["/a", "/bad", "/never-stored"]) == 2
    for view in (store, Store.open(store.root)):
        assert view.items["path"].tolist() == ["/b"] and view.skipped.empty
        np.testing.assert_array_equal(view.vectors, [[0, 1, 0]])
        assert view.known_files()["path"].tolist() == ["/b"]
    store.compact()
    kept = store.known_files()
    assert kept["path"].tolist() == ["/b"] and (kept["row"] != REMOVED_ROW).all()
    assert kept["mtime_ns"].dtype == np.int64 and int(kept["mtime_ns"][0]) == 20


# ----- copy_unique ----------------------------------------------------------------------------
def test_copy_unique_skips_a_missing_source_and_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "img"
    src.mkdir()
    paths = [src / f"w{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        painting(i, (32, 32)).save(p, "PNG")
    store = Store.create(tmp_path / "s", ModelSignature("m", "f", {"size": 4}, 3))
    rows = pd.DataFrame({"path": [str(p) for p in paths], "relpath": [p.name for p in paths],
                         "sha256": ["1", "2", "3"], "size": 1, "mtime_ns": 1, "width": 32, "height": 32,
                         "error": None, "row": [0, 1, 2]})
    store.append_segment(rows, l2_normalize(np.eye(3, dtype=np.float32)))
    paths[0].unlink()
    result = copy_unique(store, find_duplicates(store, 0.99, verify=False), tmp_path / "out")
    assert result == 2 and sorted(Path(p).name for p in result.copied) == ["w1.png", "w2.png"]
    assert result.skipped == [{"path": str(paths[0]), "reason": "file gone (re-run embed to update the store)"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w1.png", "w2.png"]


# ----- embed end to end -----------------------------------------------------------------------
def test_every_file_is_accounted_for(tmp_path: Path, lite0_encoder) -> None:
    root = tmp_path / "col"
    expected = _every_kind(root)
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": [NFC_NAME, "ghost.jpg"], "style": ["Baroque", "Rococo"]}).to_csv(csv, index=False)
    out = tmp_path / "store"

    report = embed_folders([root], out, encoder=lite0_encoder, workers=0, progress=False, labels=csv)
    assert report.discovered == report.outcome_total() == 14
    assert (report.embedded, report.reused, report.unchanged, report.skipped, report.not_images) == (10, 0, 0, 2, 2)
    assert sorted(Path(p).relative_to(root).as_posix() for p in report.not_image_files) == expected["not_images"]
    assert {Path(s["path"]).relative_to(root).as_posix() for s in report.skipped_files} == set(expected["skipped"])
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped_files}
    assert "not valid UTF-8" in reasons["\\xff\\xfe.jpg"] and "not an image" in reasons["broken.jpg"]
    assert len(report.skipped_folders) == 2
    assert (report.unmatched_labels, report.unmatched_label_rows) == (1, ["ghost.jpg"])
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # valid Unicode everywhere

    store = Store.open(out)
    items = store.items.set_index("relpath")
    assert items.loc[NFD_NAME, "style"] == "Baroque"  # NFD file, NFC label
    assert sorted(items.index) == sorted(expected["embedded"])
    for path in store.items["path"]:
        assert Path(path).read_bytes()  # every stored path opens

    (root / "gone.jpg").unlink()
    again = embed_folders([root], out, encoder=lite0_encoder, workers=0, progress=False)
    # the broken image is tried again (a skip's cause may be gone); the bad name is settled
    assert (again.discovered, again.unchanged, again.skipped, again.not_images, again.removed) == (13, 10, 1, 2, 1)
    assert again.outcome_total() == again.discovered
    assert again.removed_files == [str(root / "gone.jpg")]
    collection = Collection.open(out)
    assert str(root / "gone.jpg") not in set(collection.store.items["path"])
    groups = collection.duplicates(0.0, verify=False).to_dict()["groups"]
    listed = {g["keep"] for g in groups} | {d["path"] for g in groups for d in g["duplicates"]}
    assert str(root / "gone.jpg") not in listed and len(listed) == 9

    summary = Store.open(out).summary()
    outcomes = summary["last_embed"]["outcomes"]
    assert outcomes == again.outcomes()
    assert outcomes["discovered"] == sum(outcomes[k] for k in ("embedded", "reused", "unchanged", "skipped",
                                                                "not_images"))


def test_cli_json_and_info_show_the_accounting(tmp_path: Path, capsys) -> None:
    root = tmp_path / "col"
    _every_kind(root)
    out = tmp_path / "store"
    assert main(["embed", str(root), "--out", str(out), "--workers", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["discovered"] == sum(doc[k] for k in ("embedded", "reused", "unchanged", "skipped", "not_images"))
    assert "\\xff\\xfe.jpg" in {Path(s["path"]).name for s in doc["skipped_files"]}
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "last embed   14 files found: 10 embedded, 0 reused, 0 unchanged, 2 skipped, 2 not images" in text
    assert f"not an image: {root / 'notes.txt'}" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["last_embed"]["outcomes"]["not_images"] == 2 and info["count"] == 10


def test_dedup_copy_unique_cli_reports_a_vanished_file(tmp_path: Path, lite0_encoder, caplog) -> None:
    root = tmp_path / "col"
    root.mkdir()
    for i in range(3):
        painting(i).save(root / f"w{i}.png", "PNG")
    out = tmp_path / "store"
    embed_folders([root], out, encoder=lite0_encoder, workers=0, progress=False)
    caplog.set_level(logging.INFO, logger="artenc")
    (root / "w0.png").unlink()  # gone before the store is refreshed
    dest = tmp_path / "unique"
    assert main(["dedup", str(out), "--no-verify", "--copy-unique-to", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["w1.png", "w2.png"]
    assert "copied 2 unique works" in caplog.text and f"not copied {root / 'w0.png'}: file gone" in caplog.text


@pytest.mark.parametrize("name", ["x.JFIF", "x.Avif", "x.jpg_large", "x", "X.PNG"])
def test_image_content_is_found_whatever_the_name(tmp_path: Path, name: str) -> None:
    painting(0, (48, 32)).save(tmp_path / name, "AVIF" if name.lower().endswith(".avif") else "PNG")
    assert [p.name for p in scan_images([tmp_path]).images] == [name]
