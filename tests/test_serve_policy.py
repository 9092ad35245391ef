"""`artenc serve` answers only its own hosts and origins (case 13), with the documented status
code for every input fault and the security headers on every answer, errors included (case 14)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.conftest import painting, png_claiming
from tests.test_serve_api import (  # noqa: F401 - `served` is the store fixture
    LIMIT,
    TESTSERVER,
    jpeg_bytes,
    png_bomb,
    served,
    truncated_jpeg,
    upload,
)

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from artenc.cli import main as cli_main  # noqa: E402
from artenc.serve.app import create_app  # noqa: E402
from artenc.serve.limits import SERVER_LIMITS, allowed_hosts  # noqa: E402
from artenc.serve.state import ServeSettings  # noqa: E402
from tests.helpers_server import running_server

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def app(served, lite0_encoder, tmp_path_factory):  # noqa: F811
    settings = ServeSettings(max_upload_bytes=LIMIT, thumbnail_dir=str(tmp_path_factory.mktemp("thumbs")),
                             clusters="2", allowed_hosts=(TESTSERVER, "art.lan", "*.museum.example"))
    return create_app(str(served[0]), settings, encoder=lite0_encoder)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def assert_security_headers(r) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get(name) == value, (r.status_code, name, dict(r.headers))
    assert "default-src 'self'" in r.headers.get("content-security-policy", ""), (r.status_code, dict(r.headers))


# ----- case 13: hosts ----------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000", "testserver",
                                  "art.lan:8000", "rooms.museum.example"])
def test_allowed_hosts_are_answered(client: TestClient, host: str) -> None:
    r = client.get("/api/health", headers={"host": host})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.example:8000", "127.0.0.1.nip.io",
                                  "museum.example.evil", "10.0.0.7", ""])
def test_other_hosts_get_400(client: TestClient, host: str) -> None:
    """DNS rebinding: a foreign name resolving to this machine reads nothing."""
    for r in (client.get("/api/health", headers={"host": host}), client.get("/", headers={"host": host}),
              upload(client, jpeg_bytes(painting(1)), headers={"host": host})):
        assert r.status_code == 400 and "Invalid host header" in r.text
        assert_security_headers(r)


def test_allowed_hosts_are_loopback_host_and_extras() -> None:
    assert allowed_hosts() == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts("::", ["Art.LAN", "fe80::1", "[FE80::2]", "localhost"]) == [
        "127.0.0.1", "localhost", "[::1]", "[::]", "art.lan", "[fe80::1]", "[fe80::2]"]


@pytest.mark.parametrize("hosts", ["art.lan", ("a*b",), ("*.",), ("",)])
def test_bad_allowed_hosts_are_refused(hosts) -> None:
    with pytest.raises(ValueError, match="^allowed_hosts must be host names"):
        ServeSettings(allowed_hosts=hosts)


def test_cli_refuses_a_bad_allowed_host(served) -> None:  # noqa: F811
    assert cli_main(["serve", str(served[0]), "--allowed-host", "a*b"]) == 2


# ----- case 13: origins --------------------------------------------------------------------
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://testserver:8080", "https://testserver",
                                    "http://localhost", "http://testserver.evil.example", "file://",
                                    "http://[::1", "http://testserver:99999"])
def test_uploads_from_other_origins_get_403(client: TestClient, origin: str) -> None:
    r = upload(client, jpeg_bytes(painting(1)), headers={"origin": origin})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert_security_headers(r)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_writes_from_other_origins_get_403(client: TestClient, method: str) -> None:
    r = client.request(method, "/api/search", headers={"origin": "http://evil.example"})
    assert r.status_code == 403


def test_same_origin_and_originless_uploads_and_foreign_reads_are_answered(client: TestClient) -> None:
    data = jpeg_bytes(painting(2))
    assert upload(client, data, headers={"origin": "http://testserver"}).status_code == 200
    assert upload(client, data, headers={"origin": "http://art.lan:8000", "host": "art.lan:8000"}).status_code == 200
    assert upload(client, data).status_code == 200  # curl and scripts send no Origin
    r = client.get("/api/health", headers={"origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # the browser hides it


def test_a_refused_upload_is_not_decoded(client: TestClient, monkeypatch) -> None:
    engine = client.app.state.artenc.engine
    calls = []
    monkeypatch.setattr(engine, "upload", lambda *a: calls.append(a))
    r = upload(client, png_bomb(), headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and calls == []


# ----- case 14: status codes ---------------------------------------------------------------
def png(size=(64, 48), mode="RGB") -> bytes:
    return jpeg_bytes(Image.new(mode, size, 90), "PNG")


INPUT_FAULTS = [  # name, bytes, status, words in the detail
    ("random.bin", np.random.default_rng(0).bytes(2000), 415, "not an image"),
    ("notes.txt", b"hello, not an image\n" * 10, 415, "not an image"),
    ("page.html", b"<!doctype html><html><body>hi</body></html>", 415, "not an image"),
    ("signature.png", png()[:8], 422, "truncated or corrupt"),
    ("header_only.png", png()[:33], 422, "truncated or corrupt"),  # signature + IHDR, no pixels
    ("half.png", png((300, 200))[: len(png((300, 200))) // 2], 422, "truncated"),
    ("soi.jpg", b"\xff\xd8\xff\xe0", 422, "truncated or corrupt"),
    ("half.jpg", truncated_jpeg(), 422, "truncated"),
    ("empty.jpg", b"", 422, "empty"),
    ("bomb.png", png_bomb(), 422, "decompression-bomb"),
    ("int32.png", png_claiming(2**31 - 1, 2**31 - 1), 422, "decompression-bomb"),
    ("uint32.png", png_claiming(2**32 - 1, 1), 422, "decompression-bomb"),
]


@pytest.mark.parametrize(("name", "data", "status", "words"), INPUT_FAULTS, ids=[f[0] for f in INPUT_FAULTS])
def test_every_input_fault_has_its_documented_code(client: TestClient, name, data, status, words) -> None:
    """415 only for bytes that are no image format; 422 for damaged or oversized images."""
    r = upload(client, data, name)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and "Traceback" not in r.text
    assert_security_headers(r)


def test_oversized_bodies_get_413_with_headers(client: TestClient) -> None:
    r = upload(client, b"\xff\xd8" + b"\0" * (LIMIT + 10), "big.jpg")
    assert r.status_code == 413
    assert_security_headers(r)

    def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(20):
            yield b"\0" * 100_000
        yield b"\r\n--xyz--\r\n"

    r = client.post("/api/search", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413
    assert_security_headers(r)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404), ("GET", "/api/items/999", 404), ("GET", "/static/none.js", 404),
    ("GET", "/api/items/-1", 422), ("POST", "/api/health", 405), ("GET", "/api/clusters/99", None),
])
def test_error_answers_carry_the_security_headers(client: TestClient, method, path, status) -> None:
    r = client.request(method, path)
    assert r.status_code == status if status else r.status_code >= 400
    assert_security_headers(r)


def test_internal_errors_carry_the_security_headers(client: TestClient, monkeypatch) -> None:
    monkeypatch.setattr(client.app.state.artenc, "predict", lambda *a: 1 / 0)
    r = upload(client, jpeg_bytes(painting(1)))
    assert r.status_code == 500 and "server log" in r.json()["detail"]
    assert_security_headers(r)


# ----- case 14: what uvicorn is given ------------------------------------------------------
def test_server_limits_are_uvicorn_settings() -> None:
    import uvicorn

    config = uvicorn.Config(app=None, **SERVER_LIMITS)
    assert config.timeout_keep_alive == 5 and config.h11_max_incomplete_event_size == 16 * 1024
    assert config.limit_concurrency == 256


@pytest.fixture(scope="module")
def live(app) -> Iterator[tuple[str, int]]:
    """The app on uvicorn with `SERVER_LIMITS` (as `artenc serve` runs it), h11 protocol."""
    with running_server(app, http="h11", **SERVER_LIMITS) as address:
        yield address


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(address, timeout=20) as conn:
        conn.sendall(request)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
    return out


def test_a_request_head_over_the_limit_is_refused(live: tuple[str, int]) -> None:
    """h11_max_incomplete_event_size: a head that never ends is cut at 16 KiB, not buffered."""
    head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * (64 * 1024)
    answer = exchange(live, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_live_server_checks_the_host(live: tuple[str, int]) -> None:
    good = exchange(live, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    bad = exchange(live, b"GET /api/health HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n")
    assert good.startswith(b"HTTP/1.1 200") and bad.startswith(b"HTTP/1.1 400")
    assert b"x-content-type-options: nosniff" in bad.lower()


def test_readme_documents_every_code() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    serve = readme[readme.index("## A web page for a collection"):readme.index("### Load")]
    for code in ("400", "403", "404", "405", "409", "413", "415", "422", "500", "503"):
        assert f"| {code} |" in serve, code
    assert "--allowed-host" in serve and "timeout_keep_alive" in serve


def test_pixels_of_a_good_png_are_unchanged(client: TestClient) -> None:
    """The signature check only runs on failures: a good PNG is still found."""
    r = upload(client, jpeg_bytes(painting(5), "PNG"), "q.png", k=1)
    assert r.status_code == 200 and r.json()["neighbors"][0]["path"] == "work_0005.jpg"
