"""similar and pair on a real (generated) store: stored and new queries, grids, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from artenc.cli import main
from tests.helpers_search import image_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, lite0_encoder):
    return image_store(tmp_path_factory, lite0_encoder)


def test_stored_query_excludes_itself(store, capsys):
    query = store.items["path"][0]
    assert main(["similar", str(store.root), query, "-k", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (res,) = doc["results"]
    assert res["query"] == query and res["in_store"] is True
    assert len(res["neighbors"]) == 4
    assert query not in [nb["path"] for nb in res["neighbors"]]
    sims = [nb["similarity"] for nb in res["neighbors"]]
    assert sims == sorted(sims, reverse=True)
    assert set(res["neighbors"][0]["labels"]) == {"split", "style"}
    row = store.index_of([res["neighbors"][0]["path"]])[0]
    assert sims[0] == pytest.approx(float(store.vectors[0] @ store.vectors[row]), abs=1e-5)


def test_relative_path_and_new_file_queries(store, tmp_path, capsys):
    original = store.items["path"][store.items["relpath"] == "p03.png"].item()
    copy = tmp_path / "outside.png"
    Image.open(original).save(copy)  # same pixels, not in the store
    grid = tmp_path / "grid.png"
    assert main(["similar", str(store.root), "p03.png", str(copy), "-k", "3", "--json",
                 "--grid", str(grid)]) == 0
    doc = json.loads(capsys.readouterr().out)
    stored, new = doc["results"]
    assert stored["query"] == original
    assert new["in_store"] is False
    assert new["neighbors"][0]["path"] == original  # embedded with the store's own model
    assert new["neighbors"][0]["similarity"] > 0.999
    assert Image.open(grid).size[0] > 300


def test_pair(store, tmp_path, capsys):
    a, b = store.items["path"][0], store.items["path"][1]
    out = tmp_path / "pair.png"
    assert main(["pair", str(store.root), a, b, "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["similarity"] == pytest.approx(float(np.dot(store.vectors[0], store.vectors[1])), abs=1e-5)
    assert out.stat().st_size > 0


@pytest.mark.parametrize("args,message", [
    (["missing.jpg"], "not in the store and no such image file"),
    (["p00.png", "-k", "0"], "-k must be >= 1"),
])
def test_bad_queries_exit_2(store, caplog, args, message):
    assert main(["similar", str(store.root), *args]) == 2
    assert message in caplog.text


def test_unreadable_query_file_exit_2(store, tmp_path, caplog):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["similar", str(store.root), str(bad)]) == 2
    assert "cannot use as a query" in caplog.text
