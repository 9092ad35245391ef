"""`artenc audit` / `Collection.audit`: planted wrong labels rank first, planted outliers are the most
isolated, duplicates are linked; the CLI, the report section and the web page's /api/audit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import artenc
from artenc.audit import knn_probabilities, label_issues, outlier_scores
from artenc.cli import main
from artenc.errors import ParameterError, UsageError
from artenc.report import write_report
from artenc.search import top_k
from tests.conftest import painting, write_gallery
from tests.helpers_search import clustered, vector_store

STYLES = ["baroque", "cubism", "fauvism", "rococo", "surrealism", "ukiyo-e"]
PLANTED = [3, 40, 77, 118, 150, 201, 222, 235]  # rows given another style
DATA = Path(__file__).parents[1].parent / "shared" / "data"


def planted_labels(groups: np.ndarray, rows: list[int], n_classes: int) -> np.ndarray:
    """`groups` with each row of `rows` moved to another class (the next one)."""
    given = groups.copy()
    given[rows] = (given[rows] + 1 + np.arange(len(rows)) % (n_classes - 1)) % n_classes
    return given


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """240 works in 6 overlapping clusters, 8 wrong labels, 2 far outliers, 1 identical copy."""
    x, groups = clustered(len(STYLES), 40, dim=32, spread=0.9, seed=3)
    given = planted_labels(groups, PLANTED, len(STYLES))
    rng = np.random.default_rng(7)
    far = rng.standard_normal((2, 32)).astype(np.float32)
    x = np.vstack([x, far, x[:1]])  # rows 240, 241: outliers; 242: a copy of row 0
    styles = [STYLES[g] for g in given] + [STYLES[0], STYLES[1], STYLES[given[0]]]
    split = ["train" if i % 4 else "test" for i in range(len(x))]
    store = vector_store(tmp_path_factory.mktemp("audit"), x, {"style": styles, "split": split})
    return store, groups


@pytest.fixture(scope="module")
def report(planted):
    store, _ = planted
    return artenc.Collection(store).audit(top=20)


def test_planted_wrong_labels_rank_first(planted, report) -> None:
    store, groups = planted
    assert list(report.fields) == ["style"]  # the split column is not a label of the works
    scores = report.fields["style"].scores
    # the planted errors come first, maybe after the 2 far outliers (nothing supports their labels either)
    worst = scores.ranking[: len(PLANTED) + 2].tolist()
    assert set(PLANTED) <= set(worst) <= set(PLANTED) | {240, 241}
    assert scores.is_issue[PLANTED].sum() >= len(PLANTED) // 2  # cleanlab's verdict: flagged ones are wrong
    assert set(np.flatnonzero(scores.is_issue)) <= set(PLANTED) | {240, 241}
    issues = [i for i in report.issues("style") if i.row in PLANTED]
    assert len(issues) == len(PLANTED)
    for issue in issues:
        assert issue.suggested == STYLES[groups[issue.row]] != issue.given
        assert 0 <= issue.quality < 0.5 and issue.rank <= len(PLANTED) + 2
        assert len(issue.neighbors) == report.k and issue.neighbors[0].similarity >= issue.neighbors[-1].similarity
    quality = scores.quality[scores.checked]
    assert np.all((quality >= 0) & (quality <= 1))


def test_outliers_and_duplicate_links(report) -> None:
    assert report.outliers.ranking[:2].tolist() in ([240, 241], [241, 240])
    assert report.outliers.rank[240] <= 2 and report.outliers.z[240] > 3
    links = report.duplicate_links
    assert links[0] == [242] and links[242] == [0] and links[5] == []
    first = report.outlier_list(2)
    assert {o.row for o in first} == {240, 241} and first[0].rank == 1


def test_table_and_document(planted, report) -> None:
    store, _ = planted
    table = report.table()
    assert len(table) == len(store) and table["row"].tolist() == list(range(len(store)))
    for col in ("style_given", "style_suggested", "style_label_quality", "style_issue", "outlier_score",
                "outlier_z", "outlier_percentile", "outlier_rank", "duplicates"):
        assert col in table.columns
    assert table.loc[0, "duplicates"] == "242" and table.loc[PLANTED[0], "style_issue"]
    doc = report.to_dict()
    json.dumps(doc, allow_nan=False)
    # image quality comes from the scores stored at embed time; a vector-only store has none
    from artenc.quality import FLAGS

    assert set(doc["quality"]["flags"]) == set(FLAGS) and doc["quality"]["flags"]["dark"] == 0  # no pixel scores
    assert "quality_dark" in table.columns
    style = doc["label_issues"]["style"]
    assert style["checked"] == len(store) and len(style["worst"]) <= 20
    assert set(PLANTED) <= {w["row"] for w in style["worst"][: len(PLANTED) + 2]}
    assert doc["outliers"]["worst"][0]["row"] in (240, 241) and doc["duplicates"]["pairs"] == 1


def test_cli_json_out_and_text(planted, report, tmp_path: Path, capsys) -> None:
    store, _ = planted
    assert main(["audit", str(store.root), "--top", "20", "--out", str(tmp_path / "a"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(report.to_dict()))
    assert json.loads((tmp_path / "a" / "audit.json").read_text()) == doc
    table = pd.read_csv(tmp_path / "a" / "audit.csv")
    assert len(table) == len(store) and table.loc[table["outlier_rank"] == 1, "row"].item() in (240, 241)
    assert main(["audit", str(store.root), "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "label issues among 243 checked works" in text and "->" in text


def test_small_classes_and_unlabelled_stores(tmp_path: Path) -> None:
    x, groups = clustered(2, 10, dim=16, seed=0)
    x = np.vstack([x, x[:1] + 0.5])
    styles = [f"s{g}" for g in groups] + ["lonely"]
    report = artenc.Collection(vector_store(tmp_path / "a", x, {"style": styles, "school": ["one"] * len(x)})).audit()
    assert not report.fields["style"].scores.checked[-1] and report.fields["style"].scores.checked[:-1].all()
    assert any("'lonely'" in n for n in report.notes)
    assert not report.fields["school"].scores.checked.any() and any("school: not checked" in n for n in report.notes)
    alone = artenc.Collection(vector_store(tmp_path / "b", x[:1])).audit()
    assert alone.fields == {} and alone.outliers.score.tolist() == [0.0] and "no label columns" in alone.notes[0]


@pytest.mark.parametrize("kwargs,param", [({"k": 0}, "k"), ({"folds": 1}, "folds"), ({"top": -1}, "top"),
                                          ({"fields": ["nope"]}, "fields")])
def test_bad_parameters(planted, kwargs, param) -> None:
    with pytest.raises(ParameterError) as exc:
        artenc.Collection(planted[0]).audit(**kwargs)
    assert exc.value.param == param


def test_cli_names_the_flag(planted, caplog) -> None:
    assert main(["audit", str(planted[0].root), "--folds", "1"]) == 2
    assert "--folds must be an integer >= 2" in caplog.text


def test_empty_store(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="empty"):
        artenc.Collection(vector_store(tmp_path, np.zeros((0, 8), np.float32))).audit()


def test_knn_probabilities_and_outlier_scores_match_a_slow_reference() -> None:
    x, y = clustered(3, 7, dim=8, spread=1.0, seed=5)
    k, t = 4, 0.1
    sims, ids = top_k(x, x, k, exclude=np.arange(len(x)))
    probs = knn_probabilities(x, y, 3, k=k, temperature=t)
    for i in range(len(x)):
        s = x @ x[i]
        s[i] = -np.inf
        near = np.argsort(-s, kind="stable")[:k]
        want = np.zeros(3)
        for j in near:
            want[y[j]] += np.exp(s[j] / t)
        np.testing.assert_allclose(probs[i], want / want.sum(), rtol=1e-4)
    scores = outlier_scores(x, k)
    np.testing.assert_allclose(scores.score, (1 - sims.astype(np.float64)).mean(axis=1), rtol=1e-6)
    assert sorted(scores.rank.tolist()) == list(range(1, len(x) + 1))
    assert np.isclose(np.median(scores.z), 0)


def test_label_issues_on_arrays_checks_its_input() -> None:
    x, y = clustered(2, 6, dim=8, seed=1)
    with pytest.raises(ParameterError, match="labels"):
        label_issues(x, y[:-1])
    with pytest.raises(ParameterError, match="sources"):
        label_issues(x, y, sources=("svm",))
    missing = y.copy()
    missing[0] = -1
    out = label_issues(x, missing, k=3)
    assert not out.checked[0] and np.isnan(out.quality[0]) and out.suggested[0] == -1 and 0 not in out.ranking


def test_report_section_shows_given_and_suggested(tmp_path: Path) -> None:
    x, groups = clustered(3, 8, dim=32, spread=0.3, seed=1)
    given = groups.copy()
    given[5] = (given[5] + 1) % 3
    store = vector_store(tmp_path, x, {"style": [STYLES[g] for g in given]})
    for i, path in enumerate(store.items["path"]):
        painting(i, (96, 80)).save(path)
    html = write_report(store, tmp_path / "r.html", sections=("audit",)).read_text()
    assert '<section id="audit">' in html and "given: " + STYLES[given[5]] in html
    assert "suggested: " + STYLES[groups[5]] in html and "most isolated works" in html


def test_web_page_audit_tab(tmp_path: Path, lite0_encoder) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from artenc.embedding import embed_folders
    from artenc.serve.app import create_app
    from artenc.serve.state import ServeSettings

    images = write_gallery(tmp_path / "gallery", 12)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [str(p) for p in images], "style": [STYLES[i % 2] for i in range(12)]}).to_csv(labels)
    embed_folders([tmp_path / "gallery"], tmp_path / "store", encoder=lite0_encoder, labels=labels, workers=0,
                  progress=False)
    settings = ServeSettings(thumbnail_dir=str(tmp_path / "thumbs"), allowed_hosts=("testserver",))
    with TestClient(create_app(str(tmp_path / "store"), settings, encoder=lite0_encoder)) as client:
        client.app.state.artenc.audit.wait(120)
        doc = client.get("/api/audit?limit=5&neighbors=2").json()
        page = client.get("/").text + client.get("/static/app.js").text
    assert doc["state"] == "ready" and doc["k"] == 10 and len(doc["outliers"]) == 5
    assert doc["outliers"][0]["rank"] == 1 and doc["outliers"][0]["item"]["thumbnail_url"].startswith("/api/thumbnail/")
    style = doc["fields"]["style"]
    assert style["checked"] == 12 and len(style["worst"]) <= 5
    for issue in style["worst"]:
        assert issue["given"] != issue["suggested"] and len(issue["neighbors"]) == 2
    assert 'data-tab="audit"' in page and "/api/audit" in page


def _bench():
    spec = importlib.util.spec_from_file_location("bench_label_errors", Path(__file__).parents[1] / "scripts" /
                                                  "bench_label_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_planted_wrong_styles_on_wikiart(tmp_path: Path) -> None:
    """Issue 15's planted test: 20 wrong styles among 800 WikiArt dev works (5 flip seeds), with the
    documented recipe: embed with `lite0-texture`, then audit.

    Measured with this recipe (`scripts/bench_label_errors.py`): 6/11/11/11/11 of 20 in the top 50
    (mean 10.0; chance 1.25, the best tool of the issue 5; pooled lite0 vectors in the same run
    5/10/9/10/9). This test guards the measured level (mean >= 9, every seed >= 5).
    """
    if not (DATA / "wikiart_style" / "labels.csv").exists():
        pytest.skip(f"no real data at {DATA}")
    bench = _bench()
    store = bench.build_store(tmp_path, 800, 0, bench.RECIPE_MODEL)
    found = [bench.planted_in_top(store, flips=20, seed=seed, top=50) for seed in range(5)]
    assert min(found) >= 5 and np.mean(found) >= 9, found


def test_unmeasured_quality_is_reported_not_counted_as_clean(tmp_path: Path, capsys) -> None:
    """M3: a store without quality scores (embedded with quality=False) has NaN scores; the
    audit's pixel flags count 0 there, and a note says the works were not measured."""
    x, groups = clustered(2, 6, dim=8, seed=1)
    store = vector_store(tmp_path / "s", x, {"style": [f"s{g}" for g in groups]})
    report = artenc.Collection(store).audit()
    assert not report.quality["computed"].any()
    assert f"image quality: {len(x)} of {len(x)} works not measured" in " ".join(report.notes)
    assert main(["audit", str(store.root)]) == 0
    assert "note: image quality: 12 of 12 works not measured" in capsys.readouterr().out
