"""The public face: `import artenc` alone gives embed, Collection and typed results whose
`.to_dict()` is exactly what the matching command prints with --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import artenc
from artenc.cli import main
from tests.helpers_search import image_store


@pytest.fixture(scope="module")
def collection(tmp_path_factory, lite0_encoder) -> artenc.Collection:
    store = image_store(tmp_path_factory, lite0_encoder)
    return artenc.Collection(store, encoder=lite0_encoder)


def cli_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_top_level_names_are_public_and_lazy() -> None:
    for name in ("embed", "Collection", "create_backbone", "list_models", "train", "SimilarResult",
                 "DuplicateReport", "ClusterReport", "EvaluationReport", "PredictionReport", "ParameterError"):
        assert name in artenc.__all__ and name in dir(artenc)
    assert "tf_efficientnet_lite0" in artenc.list_models()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        artenc.nope  # noqa: B018


def test_embed_then_open(tmp_path: Path, gallery: Path, lite0_encoder) -> None:
    report = artenc.embed([gallery], tmp_path / "s", encoder=lite0_encoder, workers=0, progress=False)
    assert isinstance(report, artenc.EmbedReport) and report.embedded == 12
    c = artenc.Collection.open(tmp_path / "s")
    assert len(c) == 12 and c.vectors.shape == (12, 1280) and c.vectors.dtype == np.float32
    assert c.paths == sorted(c.paths) and all(Path(p).is_absolute() for p in c.paths)
    assert "Collection(" in repr(c)


def test_similar_holds_rows_and_paths_and_matches_the_cli(collection, capsys) -> None:
    query = collection.paths[0]
    result = collection.similar(query, k=3)
    assert isinstance(result, artenc.SimilarResult) and len(result) == 1
    [hit] = result
    assert hit.row == 0 and hit.in_store and len(hit.neighbors) == 3
    assert [collection.paths[r] for r in hit.rows] == hit.paths  # rows and paths agree
    assert 0 not in hit.rows  # a stored query is not its own neighbour
    sims = [n.similarity for n in hit.neighbors]
    assert sims == sorted(sims, reverse=True)
    assert result.to_dict() == cli_json(capsys, "similar", str(collection.root), query, "-k", "3")


def test_pair_matches_the_cli(collection, capsys) -> None:
    a, b = collection.paths[:2]
    pair = collection.pair(a, b)
    assert pair.rows == (0, 1)
    assert pair.similarity == pytest.approx(float(collection.vectors[0] @ collection.vectors[1]), abs=1e-6)
    assert pair.to_dict() == cli_json(capsys, "pair", str(collection.root), a, b)


def test_duplicates_and_leaks(collection, capsys) -> None:
    report = collection.duplicates()  # verified, the CLI's defaults
    assert isinstance(report, artenc.DuplicateReport)
    by_name = {Path(p).name: i for i, p in enumerate(collection.paths)}
    groups = [{Path(collection.paths[r]).name for r in g.rows} for g in report.groups]
    for i in (0, 1, 7):  # the planted copies
        assert {f"p{i:02d}.png", f"p{i:02d}_copy.jpg"} in groups
    for g in report.groups:
        assert g.keep_path == collection.paths[g.keep]
        assert all(collection.paths[d.row] == d.path for d in g.duplicates)
    assert report.verified and report.to_dict() == cli_json(capsys, "dedup", str(collection.root))
    leaks = collection.leaks("split")
    assert [sorted(g.rows) for g in leaks.groups] == [sorted([by_name["p00.png"], by_name["p00_copy.jpg"]])]
    assert leaks.groups[0].sides == ["test", "train"]
    assert leaks.to_dict() == cli_json(capsys, "dedup", str(collection.root), "--across", "split")
    with pytest.raises(ValueError, match="column 'nope': no such label column"):
        collection.leaks("nope", verify=False)


def test_clusters_evaluate_predict_match_the_cli(collection, capsys) -> None:
    clusters = collection.clusters(3)
    assert clusters.k == 3 and len(clusters.medoid_paths) == 3
    members = [clusters.members(c) for c in range(3)]
    assert sorted(np.concatenate(members).tolist()) == list(range(len(collection)))
    assert all(m[0] == clusters.medoids[c] for c, m in enumerate(members))
    assert clusters.to_dict() == cli_json(capsys, "cluster", str(collection.root), "--k", "3")

    evaluation = collection.evaluate(["style"], k=3, linear_probe=False)
    m = evaluation.fields["style"]
    assert 0.0 <= m.p_at_k <= 1.0 and m.n_queries == len(collection)
    assert evaluation.to_dict() == cli_json(capsys, "evaluate", str(collection.root), "--field", "style",
                                            "-k", "3", "--no-linear-probe")

    image = collection.paths[3]
    prediction = collection.predict(image, ["style"], k=3)
    [p] = prediction
    assert p.row == 3 and p.error is None and set(p.labels) == {"style"}
    assert 3 not in [n.row for n in p.neighbors]
    cli = cli_json(capsys, "predict", str(collection.root), image, "--field", "style", "-k", "3")
    assert prediction.to_dict()["predictions"] == cli["predictions"]


def test_parameter_errors_name_the_parameter_and_the_cli_names_the_flag(collection, caplog) -> None:
    with pytest.raises(artenc.ParameterError) as info:
        collection.similar(collection.paths[0], k=0)
    assert info.value.param == "k" and str(info.value).startswith("k must be >= 1 (an integer)")
    with pytest.raises(ValueError, match=r"^threshold must be a cosine similarity"):
        collection.duplicates(1.5, verify=False)
    assert main(["dedup", str(collection.root), "--threshold", "1.5"]) == 2
    assert "--threshold must be a cosine similarity" in caplog.text


def test_web_page_and_dedup_show_the_same_groups(collection, lite0_encoder, tmp_path, capsys) -> None:
    """Issue 11: `artenc serve` and `artenc dedup --json` give the same groups for one store."""
    from artenc.serve.app import create_app
    from artenc.serve.state import ServeSettings

    cli = cli_json(capsys, "dedup", str(collection.root))
    settings = ServeSettings(thumbnail_dir=str(tmp_path / "thumbs"), clusters="2", allowed_hosts=("testserver",))
    with TestClient(create_app(str(collection.root), settings, encoder=lite0_encoder)) as client:
        client.app.state.artenc.duplicates.wait(120)
        page = client.get("/api/duplicates", params={"limit": 100}).json()
    assert page["state"] == "ready" and page["verified"] == cli["verified"] is True
    assert page["threshold"] == cli["threshold"] and page["total"] == len(cli["groups"]) > 0
    items = collection.items
    web = [(items["path"][g["keep"]["id"]], sorted(items["path"][d["id"]] for d in g["duplicates"]))
           for g in page["groups"]]
    assert web == [(g["keep"], sorted(d["path"] for d in g["duplicates"])) for g in cli["groups"]]


def test_newcomer_findings(collection) -> None:
    """What a new user tripped over: parameter names, bad types, a bare field name, order."""
    from artenc.dedup import Duplicate, DuplicateGroup

    with pytest.raises(artenc.ParameterError, match="^column 'nosuch': no such label column"):
        collection.leaks("nosuch")
    for bad in (2.5, "5", True, 0):
        with pytest.raises(artenc.ParameterError, match=r"^k must be >= 1 \(an integer\), got"):
            collection.similar(collection.paths[0], k=bad)
    assert collection.evaluate("style", k=3, linear_probe=False).fields.keys() == {"style"}
    g = DuplicateGroup(keep=10, keep_path="p10", duplicates=[Duplicate(50, "p50", 0.99), Duplicate(20, "p20", 0.95)])
    assert g.rows == [10, 20, 50] and g.paths == ["p10", "p20", "p50"]
    assert collection.pair(collection.paths[0], collection.paths[0]).similarity <= 1.0
    hits = collection.similar(collection.paths[:3], k=len(collection) + 5)
    assert all(len(h.neighbors) == len(collection) - 1 for h in hits)
    assert all(n.similarity <= 1.0 for h in hits for n in h.neighbors)


def test_train_without_an_image_folder_is_a_parameter_error() -> None:
    pytest.importorskip("hydra")
    with pytest.raises(artenc.ParameterError, match="^data.root is not set"):
        artenc.train(["trainer.max_epochs=1"])
