"""The HTML report: every section from a small fixture store, self-contained, valid, with notes
for what cannot be computed; `artenc report` CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from artenc.cli import main
from artenc.report import SECTIONS, write_report
from artenc.store import Store
from tests.helpers_search import vector_store
from tests.test_viz import (
    HOSTILE,
    STYLES,
    assert_scripts_hold_no_markup,
    html_map_payload,
    make_hostile_store,
    make_viz_store,
)

VOID = {"meta", "img", "br", "input", "link", "hr", "circle", "image"}


class Checker(HTMLParser):
    """Collects tags, checks nesting, section ids and image sources."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sections: list[str] = []
        self.img_src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.img_src.append(a.get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(path: Path) -> Checker:
    """Parse the page; fail on unbalanced tags or any image not inlined."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors[:5], checker.stack)
    assert checker.img_src and all(s.startswith("data:image/") for s in checker.img_src)
    assert not re.search(r'(src|href)="(https?:)?//', text), "the report must not load anything from outside"
    return checker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return make_viz_store(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(store: Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = write_report(store, tmp_path_factory.mktemp("out") / "report.html", verify=False, dedup_threshold=0.99)
    return out, out.read_text(encoding="utf-8")


def test_report_has_every_section(report: tuple[Path, str]) -> None:
    path, html = report
    assert check_html(path).sections == list(SECTIONS)
    assert 'class="note"' not in html  # every section was computed


def test_report_content(store: Store, report: tuple[Path, str]) -> None:
    _, html = report
    n = len(store)
    assert f"{n} works" in html and "tf_efficientnet_lite0" not in html  # the fixture store's model is 'synthetic'
    assert all(s in html for s in STYLES)
    assert re.search(r"neighbours share its style", html)
    assert "group 1: 2 works" in html and "spans split" in html  # the planted copy sits in the other split
    assert "elbow" in html and "silhouette" in html and "medoid" in html
    assert len(html_map_payload(html)["x"]) == n
    assert "P@10" in html and "linear probe" in html


def test_report_notes_missing_sections_and_colours_map_by_cluster(tmp_path: Path, monkeypatch) -> None:
    x = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    unlabelled = vector_store(tmp_path, x)
    out = write_report(unlabelled, tmp_path / "r.html", map_method="pca", k_range="2:4")
    html = out.read_text()
    check_html(out)
    assert "nothing to evaluate against" in html
    assert "<b>cluster</b>" in html  # no labels: the map is coloured by cluster
    # an optional package that is not installed: its section becomes a note, the rest is written
    monkeypatch.setitem(sys.modules, "umap", None)
    html = write_report(unlabelled, tmp_path / "r2.html", map_method="umap", k_range="2:4").read_text()
    assert "This section is not available here" in html and "umap" in html
    assert "Clusters and representative works" in html


def test_report_cli_json_and_section_subset(store: Store, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub.html"
    code = main(["report", str(store.root), "--out", str(out), "--sections", "summary,evaluation", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"] == str(out) and list(doc["sections"]) == ["summary", "evaluation"]
    assert doc["sections"]["evaluation"]["fields"]["style"]["knn_accuracy"] == 1.0  # well-separated styles
    assert check_html(out).sections == ["summary", "evaluation"]


@pytest.mark.parametrize("argv", [["--sections", "summary,plots"], ["--samples", "0"]])
def test_report_cli_refuses_bad_arguments(store: Store, tmp_path: Path, argv: list[str]) -> None:
    assert main(["report", str(store.root), "--out", str(tmp_path / "r.html"), *argv]) == 2
    assert not (tmp_path / "r.html").exists()


def test_report_on_an_embedded_gallery(gallery: Path, tmp_path: Path, lite0_encoder) -> None:
    """The whole path on real images: embed, then a report with verified near-duplicates."""
    from artenc.embedding import embed_folders
    from tests.conftest import painting

    painting(3).crop((10, 10, 300, 240)).save(gallery / "a" / "copy_of_3.jpg", quality=85)
    embed_folders([gallery], tmp_path / "store", workers=0, encoder=lite0_encoder, progress=False)
    out = write_report(Store.open(tmp_path / "store"), tmp_path / "g.html", k_range="2:5")
    html = out.read_text()
    assert check_html(out).sections == list(SECTIONS)
    assert "copy_of_3.jpg" in html and "inliers" in html


CHROMIUM = os.environ.get("ARTENC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"chromium not found at {CHROMIUM} "
                    "(Debian: apt-get install -y chromium)")
def test_report_map_works_in_a_browser(store: Store, report: tuple[Path, str], tmp_path: Path) -> None:
    """Hovering a point shows its thumbnail; a legend click hides that style; no script errors."""
    sync_api = pytest.importorskip("playwright.sync_api")
    path, _ = report
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.locator("#map").scroll_into_view_if_needed()
        page.locator(".amap circle").nth(3).hover(force=True)
        tip = page.locator(".amap-tip")
        assert tip.is_visible() and tip.locator("img").count() == 1 and ".jpg" in tip.inner_text()
        page.locator(".amap-legend button").first.click()
        hidden = page.eval_on_selector_all(".amap circle", "cs => cs.filter(c => c.style.display === 'none').length")
        assert hidden == int((store.items["style"] == sorted(STYLES)[0]).sum())  # the first legend entry
        page.screenshot(path=str(tmp_path / "map.png"))
        browser.close()
    assert not errors


# ---------------------------------------------------------------- issue 12: case 10


def tiny_store(root: Path, n: int, *, copies: int = 0, labels: bool = True) -> Store:
    """`n` distinct works (real image files) plus `copies` identical copies of the first."""
    from tests.conftest import painting

    x = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
    x = np.vstack([x, np.repeat(x[:1], copies, axis=0)])
    store = vector_store(root, x, {"style": [f"s{i % 2}" for i in range(len(x))]} if labels else None)
    for i, path in enumerate(store.items["path"]):
        painting(0 if i >= n else i, (96, 80)).save(path)
    return store


@pytest.mark.parametrize("n,copies,notes", [
    (1, 0, {"neighbours": "at least 2 works", "duplicates": "at least 2 works", "clusters": "at least 3 works",
            "map": "at least 2 works", "evaluation": "no value is shared by 2 works"}),
    (2, 0, {"clusters": "at least 3 works", "evaluation": "no value is shared by 2 works"}),
    (2, 1, {"clusters": "needs at least 3 distinct pictures"}),
    (3, 0, {}),
])
def test_report_on_a_tiny_store(tmp_path: Path, capsys, n: int, copies: int, notes: dict) -> None:
    """1, 2 or 3 works: exit 0, the HTML is written, sections that cannot be computed have a note."""
    store = tiny_store(tmp_path, n, copies=copies)
    out = tmp_path / "tiny.html"
    assert main(["report", str(store.root), "--out", str(out), "--no-verify", "--map-method", "pca", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert check_html(out).sections == list(SECTIONS)
    for sid, section in doc["sections"].items():
        if sid in notes:
            assert notes[sid] in section["note"]
        else:
            assert section["note"] is None, (sid, section["note"])
    html = out.read_text()
    assert "k-range" not in html and "k_range" not in html
    if n == 3:
        assert doc["sections"]["clusters"]["k"] == 2


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    root = tmp_path_factory.mktemp("hostile")
    store = make_hostile_store(root)
    return store, write_report(store, root / "report.html", verify=False, dedup_threshold=0.99, k_range="2:4")


def test_report_with_script_breaking_names_and_labels_keeps_every_section(
    hostile_report: tuple[Store, Path],
) -> None:
    """Case 12: a file name or label `<!--<script>` (or `</script>...`) stays data in the map
    block (artenc.report.html.json_for_html) and every section after the map is there."""
    store, path = hostile_report
    html = path.read_text(encoding="utf-8")
    assert check_html(path).sections == list(SECTIONS)
    assert_scripts_hold_no_markup(html)
    data = html_map_payload(html)
    assert data["n"] == store.items["relpath"].tolist()
    assert {d.removeprefix("style: ") for d in data["l"]} == set(HOSTILE)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"chromium not found at {CHROMIUM} "
                    "(Debian: apt-get install -y chromium)")
def test_report_with_script_breaking_text_in_a_browser(hostile_report: tuple[Store, Path]) -> None:
    """The same page in Chromium: every section in the DOM, the data parses back, no script ran."""
    sync_api = pytest.importorskip("playwright.sync_api")
    store, path = hostile_report
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        events: list[str] = []
        page.on("pageerror", lambda e: events.append(f"error: {e}"))
        page.on("dialog", lambda d: (events.append(f"dialog: {d.message}"), d.dismiss()))
        page.goto(path.as_uri())
        sections = page.eval_on_selector_all("section", "ss => ss.map(s => s.id)")
        names = page.evaluate(
            "JSON.parse(document.querySelector('script[type=\"application/json\"]').textContent).n")
        circles = page.locator(".amap circle").count()
        browser.close()
    assert sections == list(SECTIONS)
    assert names == store.items["relpath"].tolist() and circles == len(store)
    assert not events
