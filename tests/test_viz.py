"""UMAP maps (PNG, interactive HTML) and TensorBoard projector files from a small fixture store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artenc.cli import main
from artenc.errors import UsageError
from artenc.report.interactive import write_map_html
from artenc.store import BASE_COLUMNS, ModelSignature, Store, l2_normalize
from artenc.viz.projector import SPRITE_MAX, metadata_table, sprite_cell, write_projector
from artenc.viz.umap_map import (
    MISSING,
    OTHER,
    coloring,
    default_color_field,
    plot_map,
    project_2d,
    spread_sample,
    store_map,
)
from tests.conftest import painting
from tests.helpers_search import clustered, vector_store

STYLES = ("Baroque", "Cubism", "Ukiyo-e")


def make_viz_store(root: Path, per_style: int = 8, duplicate: bool = True) -> Store:
    """Three clustered 'styles' of synthetic vectors with real image files, a split column and,
    optionally, a near-copy of work 0 (vector and picture) at the last row."""
    x, groups = clustered(len(STYLES), per_style, dim=32, spread=0.3, seed=1)
    if duplicate:
        x = np.vstack([x, x[:1] + 0.001])
        groups = np.append(groups, groups[0])
    n = len(x)
    labels = {"style": [STYLES[g] for g in groups], "split": ["dev" if i % 3 else "holdout" for i in range(n)]}
    if duplicate:
        labels["split"][-1] = "dev"  # the copy leaks work 0 (holdout) into dev
    store = vector_store(root, x, labels)
    for i, path in enumerate(store.items["path"]):
        painting(0 if duplicate and i == n - 1 else i, (96, 80)).save(path)
    return store


@pytest.fixture(scope="module")
def viz_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_viz_store(tmp_path_factory.mktemp("viz"))


@pytest.fixture(scope="module")
def umap_coords(viz_store: Store) -> np.ndarray:
    return project_2d(viz_store.vectors, "umap")


def test_umap_coordinates_are_finite_and_seeded(viz_store: Store, umap_coords: np.ndarray) -> None:
    assert umap_coords.shape == (len(viz_store), 2) and np.isfinite(umap_coords).all()
    np.testing.assert_allclose(project_2d(viz_store.vectors, "umap", seed=0), umap_coords, atol=1e-5)


def test_umap_keeps_clusters_apart(viz_store: Store, umap_coords: np.ndarray) -> None:
    """Each style's points are nearer their own centroid than any other style's."""
    style = viz_store.items["style"].to_numpy()
    centres = np.stack([umap_coords[style == s].mean(axis=0) for s in STYLES])
    nearest = np.argmin(np.linalg.norm(umap_coords[:, None] - centres[None], axis=2), axis=1)
    assert (np.asarray(STYLES)[nearest] == style).mean() >= 0.95


def test_projection_fallbacks_and_errors() -> None:
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    assert project_2d(x, "umap").shape == (3, 2)  # too few for UMAP: PCA
    assert project_2d(x, "pca").shape == (3, 2)
    with pytest.raises(UsageError, match="umap, pca"):
        project_2d(x, "tsne")
    with pytest.raises(UsageError, match="non-empty"):
        project_2d(np.zeros((0, 8), np.float32))


def test_coloring_keeps_frequent_values_and_groups_the_rest() -> None:
    values = [f"v{i:02d}" for i in range(25) for _ in range(25 - i)] + [None, ""]
    col = coloring(pd.DataFrame({"f": values}), "f")
    assert len(col.categories) == 21 and col.categories[-2:] == [OTHER, MISSING]
    assert col.keys[0] == "v00" and col.keys[-1] == MISSING and (col.keys == OTHER).sum() == 21 and (col.keys == MISSING).sum() == 2
    assert len(set(col.colors[c] for c in col.categories[:-2])) == 19
    with pytest.raises(UsageError, match="no such column"):
        coloring(pd.DataFrame({"f": values}), "style")
    assert default_color_field(["split", "style"]) == "style" and default_color_field(["split"]) == "split"
    assert default_color_field([]) is None


def test_spread_sample_covers_each_cluster() -> None:
    rng = np.random.default_rng(0)
    coords = np.vstack([rng.normal(c, 0.01, (50, 2)) for c in ((0, 0), (10, 0), (5, 9))])
    picks = spread_sample(coords, 12)
    assert 3 <= len(picks) <= 12 and len(set(picks.tolist())) == len(picks)
    assert {int(p) // 50 for p in picks} == {0, 1, 2}
    assert len(spread_sample(coords, 0)) == 0


@pytest.mark.parametrize("thumbnails", [False, True])
def test_plot_map_writes_a_png(viz_store: Store, umap_coords: np.ndarray, tmp_path: Path, thumbnails: bool) -> None:
    colors = coloring(viz_store.items, "style")
    out = plot_map(umap_coords, colors, tmp_path / "map.png",
                   paths=viz_store.items["path"].tolist() if thumbnails else None)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 400 and img.height > 300
        colours = np.asarray(img.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(colours, axis=0)) > 50  # points, legend and text were drawn


HOSTILE = ("<!--<script>", "</script><script>alert(1)</script>", "a&b \u2028 <b>x</b>")


def make_hostile_store(root: Path, per_style: int = 4) -> Store:
    """A clustered store whose file names and label values are script-breaking text (case 12):
    style i is HOSTILE[i]; the first file of each style is named after it (as far as a file
    name can hold it: no "/")."""
    x, groups = clustered(len(HOSTILE), per_style, dim=16, spread=0.3, seed=2)
    names = [f"{HOSTILE[g].replace('/', '%')} {i}.png" if i % per_style == 0 else f"w{i}.png"
             for i, g in enumerate(groups)]
    paths = [str(root / name) for name in names]
    for i, path in enumerate(paths):
        painting(i, (64, 48)).save(path)
    n = len(paths)
    store = Store.create(root / "store", ModelSignature("synthetic", "fp-test", {}, x.shape[1]))
    store.append_segment(pd.DataFrame({
        "path": paths, "relpath": names, "sha256": [f"{i:064x}" for i in range(n)], "size": [1000] * n,
        "mtime_ns": [0] * n, "width": [64] * n, "height": [48] * n, "error": [None] * n, "row": np.arange(n),
    }, columns=BASE_COLUMNS), l2_normalize(x))
    store.set_labels(pd.DataFrame({"path": paths, "style": [HOSTILE[g] for g in groups]}))
    return store.reload()


def script_blocks(html: str) -> list[tuple[str, str]]:
    """(type attribute, text) of every <script> element, cut where an HTML parser would cut it."""
    return re.findall(r"<script(?: type=\"([^\"]*)\")?[^>]*>(.*?)</script>", html, re.S)


def assert_scripts_hold_no_markup(html: str) -> None:
    """Case 12: no data block holds `<`, `>` or `&`; no script at all holds `<!--`, `<script`
    or `</script` (which end the element or hide the rest of the page from the parser)."""
    blocks = script_blocks(html)
    assert blocks
    for kind, text in blocks:
        assert not re.search(r"<!--|<script|</script", text, re.I), text[:200]
        if kind == "application/json":
            assert not re.search(r"[<>&\u2028\u2029]", text), text[:200]


def test_json_for_html_round_trips_script_breaking_text() -> None:
    from artenc.report.html import json_for_html, json_script

    value = {"n": list(HOSTILE), "k": "\u2029&amp;", "x": [1.5, None, True]}
    text = json_for_html(value)
    assert not re.search(r"[<>&\u2028\u2029]", text) and json.loads(text) == value
    block = json_script(value, "d")
    assert block.startswith('<script type="application/json" id="d">') and block.count("</script>") == 1
    with pytest.raises(ValueError):
        json_for_html(float("nan"))


def test_html_map_with_script_breaking_names_and_labels(tmp_path: Path) -> None:
    """Case 12 (`artenc umap --html`): hostile names and labels stay data; the page ends whole."""
    store = make_hostile_store(tmp_path)
    code = main(["umap", str(store.root), "--method", "pca", "--html", "--out", str(tmp_path / "m.png")])
    assert code == 0
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert_scripts_hold_no_markup(html)
    data = html_map_payload(html)
    assert set(data["n"]) == set(store.items["relpath"]) and any(n.startswith("<!--<script>") for n in data["n"])
    assert {d.removeprefix("style: ") for d in data["l"]} == set(HOSTILE)
    assert html.rstrip().endswith("</footer></body></html>")


def html_map_payload(html: str) -> dict:
    """The JSON data of the first interactive map in a page."""
    match = re.search(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert match, "no map data in the page"
    return json.loads(match.group(1))


def test_html_map_is_self_contained(viz_store: Store, umap_coords: np.ndarray, tmp_path: Path) -> None:
    colors = coloring(viz_store.items, "style")
    html = write_map_html(viz_store, umap_coords, colors, tmp_path / "map.html").read_text()
    data = html_map_payload(html)
    n = len(viz_store)
    assert len(data["x"]) == len(data["y"]) == len(data["k"]) == n
    assert all(t >= 0 for t in data["t"]) and len(data["thumbs"]) == n
    assert all(u.startswith("data:image/jpeg;base64,") for u in data["thumbs"])
    assert "style: Baroque" in " ".join(data["l"]) and data["n"][0] == viz_store.items["relpath"].iloc[0]
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything from outside"
    assert "Cubism (8)" in html


def test_umap_command_png_html_coords(viz_store: Store, tmp_path: Path, capsys) -> None:
    code = main(["umap", str(viz_store.root), "--out", str(tmp_path / "m.png"), "--html", "--thumbnails",
                 "--color-by", "split", "--coords", str(tmp_path / "xy.csv"), "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["color_by"] == "split" and doc["method"] == "umap" and doc["count"] == len(viz_store)
    assert Path(doc["png"]).is_file() and doc["html"] == str(tmp_path / "m.html") and Path(doc["html"]).is_file()
    xy = pd.read_csv(tmp_path / "xy.csv")
    assert list(xy.columns) == ["relpath", "style", "split", "x", "y"] and len(xy) == len(viz_store)


@pytest.mark.parametrize("argv, message", [
    ([], "--out FILE.png and/or --html"),
    (["--html"], "needs --out"),
    (["--out", "m.png", "--color-by", "artist"], "no such column"),
])
def test_umap_command_refuses_bad_arguments(viz_store: Store, tmp_path: Path, caplog, argv, message) -> None:
    argv = [a if a != "m.png" else str(tmp_path / a) for a in argv]
    assert main(["umap", str(viz_store.root), "--method", "pca", *argv]) == 2
    assert message in caplog.text


def test_store_map_refuses_an_empty_store(tmp_path: Path) -> None:
    from artenc.store import ModelSignature

    empty = Store.create(tmp_path / "empty", ModelSignature("m", "fp", {}, 4))
    with pytest.raises(UsageError, match="empty"):
        store_map(empty)


def read_with_tensorboard(logdir: Path) -> dict:
    """Serve `logdir` through TensorBoard's own projector plugin; return what its routes answer."""
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    class NoRuns:  # the logdir itself is the run "."
        def list_runs(self, ctx, experiment_id):
            return []

    apps = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=NoRuns())).get_plugin_apps()

    def get(route: str, **query) -> bytes:
        response = Client(apps[route], Response).get(route, query_string=query)
        assert response.status_code == 200, response.data
        return response.data

    runs = json.loads(get("/runs"))
    config = json.loads(get("/info", run="."))
    name = config["embeddings"][0]["tensorName"]
    return {"runs": runs, "config": config, "tensor": np.frombuffer(get("/tensor", run=".", name=name), np.float32),
            "metadata": get("/metadata", run=".", name=name).decode(),
            "sprite": get("/sprite_image", run=".", name=name)}


def test_projector_files_are_read_by_tensorboard(viz_store: Store, tmp_path: Path) -> None:
    doc = write_projector(viz_store, tmp_path / "proj", progress=False)
    seen = read_with_tensorboard(tmp_path / "proj")
    n, dim = len(viz_store), viz_store.dim
    assert seen["runs"] == ["."]
    emb = seen["config"]["embeddings"][0]
    assert emb["tensorShape"] == [n, dim] and emb["sprite"]["singleImageDim"] == [64, 64]
    np.testing.assert_allclose(seen["tensor"].reshape(n, dim), viz_store.vectors, atol=1e-5)
    lines = seen["metadata"].splitlines()
    assert lines[0] == "relpath\tstyle\tsplit" and len(lines) == n + 1
    assert lines[1].split("\t")[1:] == [viz_store.items["style"].iloc[0], viz_store.items["split"].iloc[0]]
    with Image.open(tmp_path / "proj" / "sprite.png") as sprite:
        side = int(np.ceil(np.sqrt(n))) * 64
        assert sprite.width == side and sprite.height >= 64 * int(np.ceil(n / np.ceil(np.sqrt(n))))
    assert seen["sprite"][:8] == b"\x89PNG\r\n\x1a\n" and doc["metadata_columns"] == ["relpath", "style", "split"]


def test_projector_without_sprite_and_cli(viz_store: Store, tmp_path: Path, capsys) -> None:
    assert main(["projector", str(viz_store.root), "--out", str(tmp_path / "p"), "--no-sprite", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "p" / "sprite.png").exists() and doc["sprite_cell"] is None
    assert "sprite" not in read_with_tensorboard_config(tmp_path / "p")


def read_with_tensorboard_config(logdir: Path) -> dict:
    from google.protobuf import json_format, text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    config = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    return json_format.MessageToDict(config)["embeddings"][0]


def test_metadata_cells_stay_on_one_line() -> None:
    items = pd.DataFrame({"relpath": ["a.jpg", "b.jpg"], "title": ["two\tcolumns", "two\nlines"],
                          "year": [1650.0, np.nan]})
    text = metadata_table(items, ["title", "year"])
    assert text.splitlines() == ["relpath\ttitle\tyear", "a.jpg\ttwo columns\t1650.0", "b.jpg\ttwo lines\t"]


@pytest.mark.parametrize("n", [1, 10, 4200, 50_000, 300_000])
def test_sprite_fits_the_projector_limit(n: int) -> None:
    cell = sprite_cell(n)
    assert 1 <= cell <= 64 and int(np.ceil(np.sqrt(n))) * cell <= SPRITE_MAX
