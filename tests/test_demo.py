"""`artenc demo` runs offline end to end and leaves pictures a person can look at."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image

from artenc.cli import main
from artenc.store import Store


def test_demo_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    store = Store.open(doc["store"])
    assert doc["count"] == len(store) == 66
    assert set(store.items["style"]) == {"Pointillism", "Colour Field", "Geometric Abstraction", "Op Art", "Landscape"}
    assert len(doc["grids"]) == 5
    for grid in doc["grids"]:
        with Image.open(grid) as img:
            assert img.format == "PNG" and img.width > 800
    # neighbours of a work are mostly of its own synthetic style
    from artenc.neighbors import similar

    items = store.items
    originals = items[items["kind"] == "original"]
    res = similar(store, originals["path"].tolist(), k=5).to_dict()["results"]
    style_of = dict(zip(items["path"], items["style"], strict=True))
    hits = [nb["labels"]["style"] == style_of[r["query"]] for r in res for nb in r["neighbors"]]
    assert sum(hits) / len(hits) > 0.8
    # planted near-duplicates: every group pairs a work with its own edited copy
    table = pd.read_csv(doc["duplicates"])
    assert doc["duplicate_groups"] >= 4
    for _, group in table.groupby("group"):
        stems = {Path(p).stem.removesuffix("_edited") for p in group["path"]}
        assert len(stems) == 1 and len(group) == 2
    assert 3 <= doc["clusters"]["k"] <= 8
    assert list(Path(doc["clusters"]["plots"]).glob("*.png"))
    html = Path(doc["report"]).read_text()
    assert html.startswith("<!doctype html>") or html.lower().startswith("<!doctype html>")
    assert "Near-duplicates" in html and "data:image/png;base64" in html
    # the main job is complete on the plain install: every section, the UMAP map included
    from artenc.report.report import SECTIONS

    assert "not available here" not in html
    assert all(f'id="{section}"' in html for section in SECTIONS)
    assert "placed by UMAP" in html
