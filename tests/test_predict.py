"""kNN label prediction: votes and confidence on a hand-made store, and the CLI on real images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artenc.cli import main as cli_main
from artenc.predict import predict_vectors
from artenc.store import ModelSignature, Store


def _unit(deg: list[float]) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


@pytest.fixture
def toy_store(tmp_path) -> Store:
    s = Store.create(tmp_path / "s", ModelSignature("toy", "fp", {"size": 1}, 2))
    paths = [f"/x/{i}.jpg" for i in range(5)]
    rows = pd.DataFrame({"path": paths, "relpath": [p[3:] for p in paths], "sha256": paths, "size": 1,
                         "mtime_ns": 1, "width": 1, "height": 1, "error": None, "row": np.arange(5)})
    s.append_segment(rows, _unit([0, 10, 20, 90, 100]))
    s.set_labels(pd.DataFrame({"path": paths, "style": ["a", "a", "b", "b", "b"],
                               "school": ["x", "", "y", "y", "y"]}))
    return s.reload()


def test_votes_confidence_and_neighbours(toy_store):
    [r] = [p.to_dict() for p in predict_vectors(toy_store, _unit([5]), ["style", "school"], k=3)]
    assert r["fields"]["style"] == {"label": "a", "confidence": pytest.approx(2 / 3, abs=1e-4),
                                    "votes": {"a": 2, "b": 1}}
    # the unlabelled neighbour does not vote: x 1, y 1 -> tie broken by similarity (x at 5 deg)
    assert r["fields"]["school"]["label"] == "x" and r["fields"]["school"]["votes"] == {"x": 1, "y": 1}
    assert [n["relpath"] for n in r["neighbors"]] == ["0.jpg", "1.jpg", "2.jpg"]
    assert r["neighbors"][0]["similarity"] == pytest.approx(np.cos(np.deg2rad(5)), abs=1e-4)


def test_stored_query_is_left_out(toy_store):
    [r] = [p.to_dict() for p in predict_vectors(toy_store, _unit([0]), ["style"], k=1, query_rows=[0])]
    assert r["neighbors"][0]["relpath"] == "1.jpg"


def test_cli_predict_on_images(tmp_path, capsys):
    from artenc.embedding import embed_folders

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = ["path,style"]
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        for i in range(4):
            px = (np.array(colour) * 0.8 + rng.integers(0, 50, (40, 40, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(px).save(tmp_path / "img" / f"{c}_{i}.png")
            rows.append(f"{c}_{i}.png,s{c}")
    (tmp_path / "img" / "labels.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "store"
    embed_folders([tmp_path / "img"], store, labels=tmp_path / "img" / "labels.csv", runtime="torch",
                  device="cpu", workers=0, progress=False)
    query = tmp_path / "q.png"
    Image.fromarray(np.full((40, 40, 3), (200, 40, 40), np.uint8)).save(query)
    assert cli_main(["predict", str(store), str(query), "--field", "style", "-k", "3", "--runtime", "torch",
                     "--json"]) == 0
    [pred] = json.loads(capsys.readouterr().out)["predictions"]
    assert pred["error"] is None and pred["fields"]["style"]["label"] == "s0"
    assert len(pred["neighbors"]) == 3 and pred["neighbors"][0]["style"] == "s0"


def test_cli_predict_usage_errors(tmp_path, caplog):
    assert cli_main(["predict", str(tmp_path / "missing"), "x.jpg"]) == 2
    assert "store not found" in caplog.text


def test_predict_json_shape(toy_store):
    [r] = [p.to_dict() for p in predict_vectors(toy_store, _unit([95]), ["style"], k=2)]
    doc = json.loads(json.dumps(r))
    assert doc["fields"]["style"]["label"] == "b" and doc["fields"]["style"]["confidence"] == 1.0


def test_text_of_a_classifier_prediction_names_both_methods():
    """B5: the classifier's probability is not a share of votes: the text says which is which."""
    from artenc.backbones import EncoderClassifier
    from artenc.commands.predict import describe_field
    from artenc.predict import classifier_vote
    from artenc.vote import field_vote

    clf = EncoderClassifier("style", ["Art Nouveau", "Expressionism"], np.array([[0.0, 0.0], [1.0, 0.0]],
                            np.float32), np.zeros(2, np.float32))
    knn = field_vote(["Art Nouveau"] * 4 + ["Expressionism"], [0.9, 0.8, 0.7, 0.6, 0.5])
    vote = classifier_vote(clf, np.array([1.0, 0.0]), knn)  # p(Expressionism) = e / (1 + e)
    assert describe_field(vote) == "Expressionism (classifier p=0.73; kNN vote: Art Nouveau 4/5)"
    assert describe_field(knn) == "Art Nouveau (80% of votes)"
