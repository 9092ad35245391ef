"""Real crawls (in subprocesses) against a local fake Web Gallery of Art; no internet."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA, painting

pytest.importorskip("scrapy")

from artenc_scraping import catalog  # noqa: E402

from tests.scrape_fixtures.server import FixtureServer, Route  # noqa: E402
from tests.scrape_fixtures.wga import WORKS, Work, image_bytes, serve_wga  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "scraping"), os.environ.get("PYTHONPATH", "")]
    ),
}
FAST = {  # polite defaults are kept; only the waiting is shortened for a local server
    "DOWNLOAD_DELAY": "0",
    "AUTOTHROTTLE_START_DELAY": "0",
    "AUTOTHROTTLE_MAX_DELAY": "0.1",
    "DOWNLOAD_TIMEOUT": "1",
}
FAULTS = {  # title -> words expected in its failure reason
    "Lost work": "HTTP 404",
    "Slow work": "took longer than 1.0 seconds",
    "Truncated": "truncated",
    "Not an image": "cannot identify image file",
    "Miniature": "Image too small (16x16 < 64x64)",
    "Forbidden": "Forbidden by robots.txt",
    "No page": "not a WGA artwork page URL",
}
SAVED = ["Allegory", "Self-Portrait", "Study; head of a woman", "Retried", "Madonna"]


def artenc(*args: str) -> subprocess.CompletedProcess[str]:
    """`artenc ARGS --set FAST...` in a fresh process (Twisted's reactor starts once)."""
    fast = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "artenc.cli", *args, *fast]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def by_title(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["title"]: r for r in rows}


@pytest.fixture()
def server() -> Iterator[FixtureServer]:
    srv = FixtureServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def wga_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One full crawl of the Latin-1 plain-text catalogue, shared by the tests below."""
    srv = FixtureServer()
    served = serve_wga(srv)
    out = tmp_path_factory.mktemp("wga")
    proc = artenc(
        "scrape", "wga", "--out", str(out), "--catalog-url", srv.url("/catalog.txt"), "--json"
    )
    yield {"server": srv, "served": served, "out": out, "proc": proc, "hits": dict(srv.hits)}
    srv.close()


def test_wga_summary_accounts_for_every_row(wga_crawl: dict) -> None:
    proc = wga_crawl["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    rows = len(WORKS) + 2  # + a duplicate row + a row whose URL is not an artwork page
    assert summary["items"] == rows
    assert (summary["images"], summary["failures"], summary["duplicates"]) == (5, 7, 1)
    assert "5 images saved, 7 failures" in proc.stderr
    assert "duplicate row" in proc.stderr


def test_wga_manifest_points_at_content_addressed_images(wga_crawl: dict) -> None:
    out: Path = wga_crawl["out"]
    manifest = read_csv(out / "manifest.csv")
    assert list(manifest[0])[:3] == ["path", "image_url", "author"]
    assert sorted(r["title"] for r in manifest) == sorted(SAVED)
    assert len({r["image_url"] for r in manifest}) == len(manifest)  # the duplicate row is gone
    for row in manifest:
        served = wga_crawl["served"][row["image_url"]]
        assert (
            row["path"]
            == f"images/{hashlib.sha1(served).hexdigest()[:2]}/{hashlib.sha1(served).hexdigest()}.jpg"
        )
        with Image.open(out / row["path"]) as image:
            assert image.format == "JPEG" and image.size == (96, 80)
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg")) == sorted(
        r["path"] for r in manifest
    )


def test_wga_labels_keep_accents_and_quoted_semicolons(wga_crawl: dict) -> None:
    rows = by_title(read_csv(wga_crawl["out"] / "manifest.csv"))
    durer = rows["Self-Portrait"]
    assert durer["author"] == "DÜRER, Albrecht"
    assert durer["born_died"] == "(b. 1471, Nürnberg, d. 1528, Nürnberg)"
    assert durer["location"] == "Musée du Louvre, Paris"
    study = rows["Study; head of a woman"]
    assert study["technique"] == "Chalk; heightened with white"
    assert (study["form"], study["type"], study["school"], study["timeframe"]) == (
        "graphics", "study", "French", "1501-1550",
    )  # fmt: skip
    assert study["page_url"].endswith("/html/e/ecole/study.html")


def test_wga_failures_list_each_fault_with_its_reason(wga_crawl: dict) -> None:
    failures = by_title(read_csv(wga_crawl["out"] / "failures.csv"))
    assert set(failures) == set(FAULTS)
    for title, words in FAULTS.items():
        assert words in failures[title]["reason"], failures[title]
        assert failures[title]["origin"].startswith(wga_crawl["server"].url("/catalog.txt#line="))
    assert failures["Lost work"]["url"].endswith("/art/m/missing/lost.jpg")


def test_wga_retries_server_errors_and_timeouts(wga_crawl: dict) -> None:
    hits = wga_crawl["hits"]
    assert hits["/art/f/flaky/retried.jpg"] == 2  # 500, then 200
    assert hits["/art/s/slow/late.jpg"] == 3  # RETRY_TIMES = 2
    assert hits["/art/a/aachen/allegory.jpg"] == 1  # the duplicate row is not fetched again
    assert "/art/p/private/secret.jpg" not in hits  # robots.txt obeyed
    assert hits["/robots.txt"] == 1


def test_wga_rerun_resumes_without_refetching(wga_crawl: dict) -> None:
    srv, out = wga_crawl["server"], wga_crawl["out"]
    before = dict(srv.hits)
    manifest_before = (out / "manifest.csv").read_text(encoding="utf-8")
    proc = artenc(
        "scrape", "wga", "--out", str(out), "--catalog-url", srv.url("/catalog.txt"), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["images"], summary["already_done"]) == (0, 6)  # 5 + the duplicate row
    assert (out / "manifest.csv").read_text(encoding="utf-8") == manifest_before
    assert srv.hits["/art/a/aachen/allegory.jpg"] == before["/art/a/aachen/allegory.jpg"]
    assert srv.hits["/art/m/missing/lost.jpg"] == before["/art/m/missing/lost.jpg"] + 1  # retried
    failures = read_csv(out / "failures.csv")
    assert sorted(r["title"] for r in failures) == sorted(FAULTS)  # listed once, not twice


def test_manifest_feeds_artenc_embed_labels(wga_crawl: dict, tmp_path: Path) -> None:
    pytest.importorskip("artenc.embedding")
    out, store = wga_crawl["out"], tmp_path / "store"
    cmd = [sys.executable, "-m", "artenc.cli", "embed", str(out), "--out", str(store)]
    cmd += ["--labels", str(out / "manifest.csv"), "--runtime", "torch", "--workers", "0", "--json"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert (report["embedded"], report["skipped"]) == (5, 0)
    from artenc.store import Store

    items = Store.open(store).items
    assert sorted(items["title"]) == sorted(SAVED)
    assert set(items["school"]) == {"German", "French", "Dutch", "Italian"}


def test_scrapy_crawl_zipped_utf8_catalogue_with_filters_and_descriptions(
    server: FixtureServer, tmp_path: Path
) -> None:
    serve_wga(server)
    del server.routes["/html/d/durer/1/selfport.html"]  # no page: empty description, image kept
    out = tmp_path / "out"
    args = {"catalog_url": server.url("/data_txt.zip"), "form": "painting", "school": "german"}
    cmd = [sys.executable, "-m", "scrapy", "crawl", "wga", "-a", "describe=1"]
    cmd += [a for k, v in args.items() for a in ("-a", f"{k}={v}")]
    cmd += [a for k, v in {**FAST, "IMAGES_STORE": str(out)}.items() for a in ("-s", f"{k}={v}")]
    proc = subprocess.run(
        cmd, cwd=ROOT / "scraping", env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = by_title(read_csv(out / "manifest.csv"))
    assert set(rows) == {"Allegory", "Self-Portrait"}
    assert rows["Allegory"]["description"] == "Allegory About AACHEN, Hans von."
    assert rows["Self-Portrait"]["description"] == ""
    assert rows["Self-Portrait"]["author"] == "DÜRER, Albrecht"
    assert [r["title"] for r in read_csv(out / "failures.csv")] == ["No page"]
    assert "/art/s/sculptor/madonna.jpg" not in server.hits


def test_wga_limit_and_type_filter(server: FixtureServer, tmp_path: Path) -> None:
    serve_wga(server)
    out = tmp_path / "out"
    proc = artenc(
        "scrape", "wga", "--out", str(out), "--catalog-url", server.url("/catalog.txt"),
        "--type", "portrait", "--limit", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["title"] for r in read_csv(out / "manifest.csv")] == ["Self-Portrait"]
    assert read_csv(out / "failures.csv") == []
    assert json.loads(proc.stdout)["items"] == 1


def test_wga_unreachable_catalogue_is_a_failure(server: FixtureServer, tmp_path: Path) -> None:
    serve_wga(server)
    out = tmp_path / "out"
    proc = artenc("scrape", "wga", "--out", str(out), "--catalog-url", server.url("/nope.zip"))
    assert proc.returncode == 1
    (failure,) = read_csv(out / "failures.csv")
    assert failure["reason"] == "catalogue unavailable: HTTP 404"


def test_urls_csv_keeps_label_columns(server: FixtureServer, tmp_path: Path) -> None:
    server.routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", "text/plain")
    server.routes["/a.jpg"] = Route(image_bytes(1), "image/jpeg")
    server.routes["/b.png"] = Route(image_bytes(2, "PNG"), "image/png")
    server.routes["/page.html"] = Route(b"<html>hi</html>", "text/html")
    listing = tmp_path / "images.csv"
    rows = [
        ("style", "url", "artist"),
        ("Baroque", server.url("/a.jpg"), "Rubens"),
        ("Rococo", server.url("/b.png"), "Watteau"),
        ("Baroque", server.url("/a.jpg"), "Rubens"),
        ("Gothic", server.url("/gone.jpg"), "Anon"),
        ("Gothic", server.url("/page.html"), "Anon"),
        ("Gothic", "ftp://example.org/x.jpg", "Anon"),
    ]
    with listing.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "out"
    proc = artenc("scrape", "urls", str(listing), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = read_csv(out / "manifest.csv")
    assert list(manifest[0]) == ["path", "image_url", "style", "artist"]
    assert [(r["style"], r["artist"]) for r in manifest] == [
        ("Baroque", "Rubens"),
        ("Rococo", "Watteau"),
    ]
    assert all((out / r["path"]).is_file() for r in manifest)
    reasons = {r["url"].rsplit("/", 1)[-1]: r["reason"] for r in read_csv(out / "failures.csv")}
    assert reasons["gone.jpg"] == "HTTP 404"
    assert "cannot identify image file" in reasons["page.html"]
    assert "not an http(s) URL" in next(v for k, v in reasons.items() if k.startswith("images.csv"))
    assert json.loads(proc.stdout)["duplicates"] == 1


def test_urls_txt_with_thumbnails(server: FixtureServer, tmp_path: Path) -> None:
    for i in range(3):
        server.routes[f"/img/{i}.jpg"] = Route(image_bytes(i, size=(120, 90)), "image/jpeg")
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# search results\n" + "\n".join(server.url(f"/img/{i}.jpg") for i in range(3))
    )
    out = tmp_path / "out"
    proc = artenc("scrape", "urls", str(listing), "--out", str(out), "--thumbs", "32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = read_csv(out / "manifest.csv")
    assert list(manifest[0]) == ["path", "image_url"]
    assert len(manifest) == 3
    for row in manifest:
        thumb = out / "thumbs" / "small" / Path(row["path"]).name
        with Image.open(thumb) as image:
            assert max(image.size) == 32


def test_output_folder_of_another_kind_is_refused(server: FixtureServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.csv").write_text("path,image_url,author\n", encoding="utf-8")
    listing = tmp_path / "urls.txt"
    listing.write_text(server.url("/a.jpg") + "\n")
    proc = artenc("scrape", "urls", str(listing), "--out", str(out))
    assert proc.returncode == 2
    assert "choose another output folder" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["urls", "missing.txt", "--out", "o"], "URL list not found"),
        (["wga", "--out", "o", "--limit", "-1"], "--limit must be >= 0"),
        (["wga", "--out", "o", "--set", "NOEQUALS"], "--set expects NAME=VALUE"),
        (["wga", "--out", "o", "--min-size", "0"], "--min-size must be >= 1"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from artenc.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["scrape", *args]) == 2
    assert message in caplog.text


def test_csv_without_url_column_exits_2(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("link,style\nhttp://x/a.jpg,Baroque\n", encoding="utf-8")
    proc = artenc("scrape", "urls", str(listing), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "needs a 'url' column" in proc.stderr


def test_killed_crawl_resumes_with_no_lost_or_duplicated_rows(
    server: FixtureServer, tmp_path: Path
) -> None:
    n = 24
    for i in range(n):
        server.routes[f"/img/{i}.jpg"] = Route(image_bytes(i), "image/jpeg", delay=0.2)
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(server.url(f"/img/{i}.jpg") for i in range(n)))
    out = tmp_path / "out"
    fast = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "artenc.cli", "scrape", "urls", str(listing), "--out", str(out)]
    cmd += ["--jobdir", str(out / ".job"), *fast]
    crawl = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        manifest = out / "manifest.csv"
        for _ in range(300):
            if manifest.exists() and len(read_csv(manifest)) >= 4:
                break
            subprocess.run(["sleep", "0.05"], check=True)
    finally:
        crawl.send_signal(signal.SIGKILL)
        crawl.wait()
    killed_at = len(read_csv(out / "manifest.csv"))
    assert 4 <= killed_at < n
    proc = subprocess.run([*cmd, "--json"], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["already_done"] == killed_at
    rows = read_csv(out / "manifest.csv")
    assert sorted(r["image_url"] for r in rows) == sorted(
        server.url(f"/img/{i}.jpg") for i in range(n)
    )


@pytest.mark.slow
def test_wga_crawl_of_real_catalogue_rows(server: FixtureServer, tmp_path: Path) -> None:
    """Real WGA rows (read from the shared data, never copied) served by the local server."""
    source = SHARED_DATA / "wga_catalog" / "catalog.csv"
    if not source.exists():
        pytest.skip(f"{source} not available")
    text = catalog.decode(source.read_bytes())  # its encoding is detected like a catalogue's
    real = list(itertools.islice(csv.DictReader(io.StringIO(text, newline="")), 60))
    works = []
    for i, row in enumerate(real):
        slug = row["jpg_link"].split("/art/", 1)[1].removesuffix(".jpg")
        kind = "404" if i % 10 == 9 else "jpeg"
        works.append(Work(row["AUTHOR"], "", row["TITLE"], "", row["TECHNIQUE"], row["LOCATION"],
                          slug, "painting", row["TYPE"], row["SCHOOL"], row["TIMEFRAME"], kind))  # fmt: skip
    serve_wga(server, works, extras=False)
    out = tmp_path / "out"
    proc = artenc("scrape", "wga", "--out", str(out), "--catalog-url", server.url("/data_txt.zip"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest, failures = read_csv(out / "manifest.csv"), read_csv(out / "failures.csv")
    expected = {server.url(w.image_path) for w in works if w.image == "jpeg"}
    assert {r["image_url"] for r in manifest} == expected
    assert {r["title"] for r in manifest} == {w.title for w in works if w.image == "jpeg"}
    assert {r["url"] for r in failures} == {
        server.url(w.image_path) for w in works if w.image == "404"
    }
    assert all(r["reason"] == "HTTP 404" for r in failures)



def _transparent(seed: int) -> Image.Image:
    """A painting whose frame is fully transparent over loud hidden colours, with a soft edge.

    The hidden colours (random noise) are what a converter that drops alpha shows.
    """
    rgb = np.asarray(painting(seed, (640, 512))).copy()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:64], alpha[-64:], alpha[:, :64], alpha[:, -64:] = 0, 0, 0, 0
    alpha[64:96, 64:-64] = np.linspace(0, 255, 32, dtype=np.uint8)[:, None]  # a soft edge
    hidden = np.random.default_rng(seed).integers(0, 256, rgb.shape, dtype=np.uint8)
    rgb[alpha == 0] = hidden[alpha == 0]
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def test_transparent_images_are_saved_on_white_like_embed(
    server: FixtureServer, tmp_path: Path, lite0_encoder
) -> None:
    """Case 11: the saved JPEG is the original composited on white, as `embed` decodes it
    (artenc.images.to_rgb), and it embeds like the original; a JPEG is kept byte for byte."""
    from artenc.images import decode_crop, open_image

    server.routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", "text/plain")
    originals = {}
    for name, fmt, options in [
        ("clear.png", "PNG", {}),
        ("hidden.webp", "WEBP", {"lossless": True, "exact": True}),  # keeps the hidden colours
        ("black.png", "PNG", {}),
    ]:
        image = _transparent(len(originals) + 1)
        if name == "black.png":  # the usual PNG export: transparent pixels are (0, 0, 0, 0)
            arr = np.asarray(image).copy()
            arr[arr[..., 3] == 0] = 0
            image = Image.fromarray(arr, "RGBA")
        buf = io.BytesIO()
        image.save(buf, fmt, **options)
        originals[name] = buf.getvalue()
    originals["photo.jpg"] = image_bytes(4, size=(120, 90))
    for name, data in originals.items():
        server.routes[f"/{name}"] = Route(data, "image/" + name.rsplit(".", 1)[1])
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(server.url(f"/{name}") for name in originals))
    out = tmp_path / "out"
    proc = artenc("scrape", "urls", str(listing), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = {r["image_url"].rsplit("/", 1)[-1]: out / r["path"] for r in read_csv(out / "manifest.csv")}
    assert sorted(saved) == sorted(originals)
    assert saved.pop("photo.jpg").read_bytes() == originals.pop("photo.jpg")
    for name, data in originals.items():
        expected = np.asarray(open_image(data, name)[0], dtype=np.int16)  # embed's decode, on white
        with Image.open(saved[name]) as image:
            got = np.asarray(image.convert("RGB"), dtype=np.int16)
        frame = np.asarray(Image.open(io.BytesIO(data)))[..., 3] == 0
        assert got[frame].mean() >= 254, name  # white, not the hidden colours
        assert np.abs(got - expected).mean() < 2, name  # JPEG noise only
    pixels = [decode_crop(source, lite0_encoder.preprocess).pixels
              for name, data in originals.items() for source in (data, saved[name])]  # fmt: skip
    vectors = lite0_encoder.encode(np.stack(pixels))
    cosines = np.sum(vectors[0::2] * vectors[1::2], axis=1)
    assert cosines.min() >= 0.99, dict(zip(originals, cosines.round(4), strict=True))
