"""`artenc serve` in a real browser: Debian's chromium driven by Playwright.

Opens the page on a live uvicorn server, uploads an image, waits for the nearest
works, checks them, opens the clusters and duplicates tabs, and saves screenshots (into
$ARTENC_SCREENSHOT_DIR when set, else the test's temp folder). Skips only when
chromium is not installed (CI installs it: `apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import painting
from tests.helpers_server import running_server
from tests.test_serve_api import STYLES, served  # noqa: F401 - the store fixture

CHROMIUM = os.environ.get("ARTENC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def live_url(served, lite0_encoder, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    """The app on uvicorn in a thread, on a free loopback port."""

    from artenc.serve.app import create_app
    from artenc.serve.state import ServeSettings

    settings = ServeSettings(thumbnail_dir=str(tmp_path_factory.mktemp("thumbs")), clusters="3")
    app = create_app(str(served[0]), settings, encoder=lite0_encoder)
    with running_server(app) as (host, port):
        yield f"http://{host}:{port}"


def wait_for_images(sync_api, images) -> None:
    """Every image loaded and decoded (no string-eval waits: the page's CSP forbids them)."""
    for i in range(images.count()):
        sync_api.expect(images.nth(i)).to_have_js_property("complete", True, timeout=20_000)
        assert images.nth(i).evaluate("img => img.naturalWidth") > 0


def test_upload_shows_neighbours_and_predictions(live_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    shots = Path(os.environ.get("ARTENC_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    query = tmp_path / "my_painting.jpg"
    painting(7, (480, 360)).save(query, quality=88)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(live_url + "/")
            sync_api.expect(page.locator("#store-summary")).to_contain_text("19 works")

            page.set_input_files("#file", str(query))
            cards = page.locator(".result-card")
            sync_api.expect(cards).to_have_count(10, timeout=20_000)
            sync_api.expect(cards.first.locator(".path")).to_have_text("work_0007.jpg")
            sync_api.expect(cards.first.locator(".labels")).to_have_text(f"style: {STYLES[7 % 3]}")
            sync_api.expect(page.locator("#predicted-list dt").first).to_have_text("style")
            wait_for_images(sync_api, page.locator(".result-card img"))
            page.screenshot(path=str(shots / "serve-search.png"), full_page=True)

            page.get_by_role("tab", name="Clusters").click()
            sync_api.expect(page.locator(".cluster-card")).to_have_count(3, timeout=60_000)
            page.locator(".cluster-card .thumb").first.click()
            sync_api.expect(page.locator("#cluster-members .card").first.locator(".badge")).to_have_text("medoid")
            wait_for_images(sync_api, page.locator("#cluster-members img"))
            page.screenshot(path=str(shots / "serve-cluster.png"), full_page=True)

            page.get_by_role("tab", name="Duplicates").click()
            group = page.locator(".group").filter(has_text="copy_of_0000.jpg")
            sync_api.expect(group.locator(".keeper")).to_have_count(1, timeout=60_000)
            sync_api.expect(group).to_contain_text("work_0000.jpg")
            wait_for_images(sync_api, group.locator("img"))
            page.screenshot(path=str(shots / "serve-duplicates.png"))
        finally:
            browser.close()
    assert not problems, problems
    assert (shots / "serve-search.png").stat().st_size > 10_000
