"""`artenc serve`: the JSON API through FastAPI's TestClient, on a small real store."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import painting, png_claiming, write_gallery

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from artenc.cli import main as cli_main  # noqa: E402
from artenc.images import ImageLoadError  # noqa: E402
from artenc.serve.app import create_app  # noqa: E402
from artenc.serve.engine import QueryEngine  # noqa: E402
from artenc.serve.state import ServeSettings  # noqa: E402

STYLES = ("baroque", "cubism", "ukiyo-e")
LIMIT = 1_000_000  # upload limit for these tests
TESTSERVER = "testserver"  # the Host of TestClient's requests


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, lite0_encoder) -> tuple[Path, Path]:
    """A store of 18 paintings labelled by style, plus a planted near-copy of work 0."""
    from artenc.embedding import embed_folders

    root = tmp_path_factory.mktemp("serve")
    images = write_gallery(root / "gallery", 18)
    painting(0).resize((300, 240)).save(root / "gallery" / "copy_of_0000.jpg", quality=80)
    images.append(root / "gallery" / "copy_of_0000.jpg")
    labels = root / "labels.csv"
    pd.DataFrame({"path": [str(p) for p in images],
                  "style": [STYLES[i % 3] for i in range(18)] + [STYLES[0]]}).to_csv(labels, index=False)
    embed_folders([root / "gallery"], root / "store", encoder=lite0_encoder, labels=labels,
                  workers=0, progress=False)
    return root / "store", root / "gallery"


@pytest.fixture(scope="module")
def client(served, lite0_encoder, tmp_path_factory) -> TestClient:
    settings = ServeSettings(max_upload_bytes=LIMIT, thumbnail_dir=str(tmp_path_factory.mktemp("thumbs")),
                             clusters="3", allowed_hosts=(TESTSERVER,))
    with TestClient(create_app(str(served[0]), settings, encoder=lite0_encoder)) as c:
        yield c


def state_of(client: TestClient):
    return client.app.state.artenc


def jpeg_bytes(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (the decoder would need ~30 GB)."""
    return png_claiming(width, height)


def upload(client: TestClient, data: bytes, name: str = "query.jpg", k: int | None = 5, **kw):
    params = {} if k is None else {"k": k}
    return client.post("/api/search", params=params, files={"file": (name, data, "application/octet-stream")}, **kw)


# ----- good requests -----------------------------------------------------------------------
def test_health_and_headers(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok" and doc["items"] == 19 and doc["label_columns"] == ["style"]
    assert doc["model"] == "tf_efficientnet_lite0" and doc["max_upload_bytes"] == LIMIT
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_search_finds_the_uploaded_work_first(client: TestClient, served, fmt: str) -> None:
    r = upload(client, jpeg_bytes(painting(7), fmt), f"query.{fmt.lower()}", k=5)
    assert r.status_code == 200, r.text
    doc = r.json()
    first = doc["neighbors"][0]
    assert first["path"] == "work_0007.jpg" and first["similarity"] > 0.9
    assert set(first) == {"id", "path", "width", "height", "labels", "thumbnail_url", "similarity"}
    assert first["labels"] == {"style": STYLES[7 % 3]}
    sims = [n["similarity"] for n in doc["neighbors"]]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True)
    assert doc["predicted"]["style"]["label"] in STYLES
    assert sum(doc["predicted"]["style"]["votes"].values()) == 5
    assert first["thumbnail_url"] == f"/api/thumbnail/{first['id']}"


def test_predicted_label_of_the_nearest_work(client: TestClient) -> None:
    doc = upload(client, jpeg_bytes(painting(4)), k=1).json()
    assert doc["predicted"] == {"style": {"label": STYLES[4 % 3], "confidence": 1.0, "votes": {STYLES[1]: 1}}}


def test_default_k_is_ten_but_capped_by_the_store(client: TestClient) -> None:
    assert len(upload(client, jpeg_bytes(painting(3)), k=None).json()["neighbors"]) == 10
    assert len(upload(client, jpeg_bytes(painting(3)), k=50).json()["neighbors"]) == 19


def test_thumbnail_is_a_small_jpeg_and_cached(client: TestClient) -> None:
    r = client.get("/api/thumbnail/3")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) <= 256
    assert client.get("/api/thumbnail/3").content == r.content
    assert len(list(state_of(client).thumbnails.folder.rglob("*.jpg"))) >= 1


def test_item_and_similar_to_item(client: TestClient) -> None:
    item = client.get("/api/items/2").json()
    assert item["id"] == 2 and item["path"].endswith(".jpg") and not item["path"].startswith("/")
    doc = client.get("/api/items/2/similar", params={"k": 4}).json()
    ids = [n["id"] for n in doc["neighbors"]]
    assert len(ids) == 4 and 2 not in ids


def test_radius_lists_every_work_above_it(client: TestClient, served) -> None:
    """?radius=R (issue 15): every work with cosine >= R, most similar first, at most k; `within`
    counts them all; without it the document keeps its keys."""
    from artenc.store import Store

    x = np.asarray(Store.open(served[0]).vectors, dtype=np.float64)
    sims = x @ x[2]
    ranked = sorted((i for i in range(len(x)) if i != 2), key=lambda i: (-sims[i], i))
    radius = round(float((sims[ranked[3]] + sims[ranked[4]]) / 2), 6)  # 4 works above it
    doc = client.get("/api/items/2/similar", params={"k": 50, "radius": radius}).json()
    assert [n["id"] for n in doc["neighbors"]] == ranked[:4] and doc["within"] == 4 and doc["radius"] == radius
    cut = client.get("/api/items/2/similar", params={"k": 2, "radius": radius}).json()
    assert [n["id"] for n in cut["neighbors"]] == ranked[:2] and cut["within"] == 4
    assert set(client.get("/api/items/2/similar", params={"k": 2}).json()) == {"neighbors", "predicted", "seconds"}
    r = client.post("/api/search", params={"k": 50, "radius": -1}, files={"file": ("q.jpg", jpeg_bytes(painting(7)))})
    assert r.status_code == 200 and r.json()["within"] == len(x) == len(r.json()["neighbors"])
    assert client.get("/api/items/2/similar", params={"radius": 1.5}).status_code == 422


def test_planted_copy_is_a_duplicate_group(client: TestClient) -> None:
    state_of(client).duplicates.wait(60)
    doc = client.get("/api/duplicates").json()
    assert doc["state"] == "ready" and doc["verified"] is True  # as `artenc dedup` (issue 11)
    groups = [{g["keep"]["path"], *(d["path"] for d in g["duplicates"])} for g in doc["groups"]]
    assert {"work_0000.jpg", "copy_of_0000.jpg"} in groups


def test_clusters_cover_the_store(client: TestClient) -> None:
    state_of(client).clusters.wait(60)
    doc = client.get("/api/clusters", params={"members": 2}).json()
    assert doc["state"] == "ready" and doc["k"] == 3 and len(doc["clusters"]) == 3
    assert sum(c["size"] for c in doc["clusters"]) == 19
    sizes = [c["size"] for c in doc["clusters"]]
    assert sizes == sorted(sizes, reverse=True)
    one = client.get("/api/clusters/0", params={"limit": 100}).json()
    assert one["members"][0]["id"] == one["medoid"]["id"] and len(one["members"]) == one["size"]
    assert client.get("/api/clusters/3").status_code == 404


def test_page_static_files_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/health", "/api/search", "/api/thumbnail/{item_id}"} <= set(paths)


# ----- bad requests -----------------------------------------------------------------------
def truncated_jpeg() -> bytes:
    data = jpeg_bytes(painting(1))
    return data[: len(data) // 2]


@pytest.mark.parametrize(("name", "data", "status", "words"), [
    ("notes.txt", b"hello, not an image\n" * 10, 415, "not an image"),
    ("empty.jpg", b"", 422, "empty"),
    ("half.jpg", truncated_jpeg(), 422, "truncated"),
    ("bomb.png", png_bomb(), 422, "decompression-bomb"),
])
def test_bad_uploads_are_refused_with_a_message(client: TestClient, name, data, status, words) -> None:
    r = upload(client, data, name)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and "Traceback" not in r.text


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 101}, {"k": "ten"}])
def test_bad_k(client: TestClient, params) -> None:
    r = client.post("/api/search", params=params, files={"file": ("q.jpg", jpeg_bytes(painting(1)))})
    assert r.status_code == 422


def test_missing_file_field(client: TestClient) -> None:
    assert client.post("/api/search", data={"other": "x"}).status_code == 422


def test_oversized_upload_is_413(client: TestClient) -> None:
    big = b"\xff\xd8" + b"\0" * (LIMIT + 10)
    r = upload(client, big, "big.jpg")
    assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_oversized_chunked_upload_is_413(client: TestClient) -> None:
    """No Content-Length: the limit is enforced while the body streams in."""
    boundary = b"xyz"
    head = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"

    def body():
        yield head
        for _ in range(20):
            yield b"\0" * 100_000
        yield b"\r\n--xyz--\r\n"

    r = client.post("/api/search", content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"})
    assert r.status_code == 413


@pytest.mark.parametrize("path", [
    "/api/items/999", "/api/items/19/similar", "/api/thumbnail/19", "/api/thumbnail/100000000000",
])
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and "no item" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/api/items/-1", "/api/thumbnail/abc", "/api/thumbnail/1.5"])
def test_malformed_ids_are_422(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 422


TRAVERSALS = [
    "/api/thumbnail/../../etc/passwd",
    "/api/thumbnail/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/thumbnail/%2e%2e/%2e%2e/etc/passwd",
    "/api/thumbnail/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/thumbnail/0/../../../../etc/passwd",
    "/api/thumbnail//etc/passwd",
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static//etc/passwd",
]


def raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """Send a GET with this exact path to the ASGI app (no client-side URL normalisation)."""
    from urllib.parse import unquote

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
             "server": ("testserver", 80)}
    out: dict = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["body"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_impossible(client: TestClient, path: str) -> None:
    for status, body in (raw_get(client.app, path), (lambda r: (r.status_code, r.content))(client.get(path))):
        assert status in (404, 422), (path, status)
        assert b"root:" not in body


def test_thumbnail_of_a_vanished_file_is_404_without_its_path(client: TestClient, monkeypatch) -> None:
    state = state_of(client)
    paths = state.paths.copy()
    paths[5] = "/nonexistent/secret/folder/gone.jpg"
    monkeypatch.setattr(state, "paths", paths)
    monkeypatch.setattr(state, "sha256", np.array(["ab" * 32] * state.count))
    r = client.get("/api/thumbnail/5")
    assert r.status_code == 404 and "secret" not in r.text


def test_internal_errors_hide_the_trace(served, lite0_encoder, tmp_path, monkeypatch) -> None:
    app = create_app(str(served[0]), ServeSettings(thumbnail_dir=str(tmp_path), allowed_hosts=(TESTSERVER,)),
                     encoder=lite0_encoder)
    monkeypatch.setattr(app.state.artenc, "predict", lambda *a: 1 / 0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = upload(c, jpeg_bytes(painting(1)))
    assert r.status_code == 500
    assert "ZeroDivision" not in r.text and "Traceback" not in r.text and "server log" in r.json()["detail"]


# ----- the engine and the CLI -------------------------------------------------------------
class _MeanEncoder:
    """Fake encoder: every dimension is the mean pixel value plus one; counts concurrent calls."""

    preprocess = None  # set per test from the real encoder

    def __init__(self) -> None:
        self.fail = False
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def encode(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.fail:
                raise RuntimeError("encoder broke")
            time.sleep(0.01)
            v = np.repeat(batch.reshape(len(batch), -1).mean(axis=1, keepdims=True), 4, axis=1) + 1.0
            return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
        finally:
            with self.lock:
                self.active -= 1


class _Index:
    vectors = np.eye(4, dtype=np.float32)

    def search(self, q: np.ndarray, k: int):
        sims = q @ self.vectors.T
        ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, ids, axis=1), ids


def test_engine_runs_at_most_workers_queries_and_survives_errors(lite0_encoder) -> None:
    encoder = _MeanEncoder()
    encoder.preprocess = lite0_encoder.preprocess
    engine = QueryEngine(encoder, _Index(), workers=2, threads=1, max_pixels=10_000_000)
    data = jpeg_bytes(painting(2))
    futures = [engine.upload(data, "q.jpg", 2) if i % 2 else engine.vector(np.eye(4)[i % 4], 1)
               for i in range(16)]
    for i, f in enumerate(futures):
        sims, ids = f.result(timeout=30)
        assert len(ids) == (2 if i % 2 else 1)
        if not i % 2:
            assert ids[0] == i % 4 and sims[0] == pytest.approx(1.0)
    assert encoder.most_active <= 2
    with pytest.raises(ImageLoadError, match="not an image"):
        engine.upload(b"plain text", "notes.txt", 1).result(timeout=10)
    encoder.fail = True
    with pytest.raises(RuntimeError, match="encoder broke"):
        engine.upload(data, "q.jpg", 1).result(timeout=10)
    encoder.fail = False
    assert engine.upload(data, "q.jpg", 1).result(timeout=10)[1].shape == (1,)
    engine.close()
    with pytest.raises(RuntimeError):
        engine.vector(np.eye(4)[0], 1)


@pytest.mark.parametrize("argv", [
    ["serve", "{tmp}/no-such-store"],
    ["serve", "{store}", "--clusters", "many"],
    ["serve", "{store}", "--max-upload-mb", "0"],
    ["serve", "{store}", "--port", "70000"],
])
def test_cli_refuses_bad_arguments(served, tmp_path, argv) -> None:
    argv = [a.format(tmp=tmp_path, store=served[0]) for a in argv]
    assert cli_main(argv) == 2


def test_queries_by_id_read_only_the_rows_they_need(served, lite0_encoder, tmp_path) -> None:
    """With an index that keeps no vectors in memory (a saved ivfpq index), a query by stored
    work and a radius query read that work's row and stream the store's vectors block by block:
    the store's vectors are never materialised (at a million works: 5 GB for one request)."""
    import shutil

    from artenc.index import build_store_index, save_index
    from artenc.store import Store

    shutil.copytree(served[0], tmp_path / "store")
    store = Store.open(tmp_path / "store")
    save_index(store, build_store_index(store, "ivfpq"))
    settings = ServeSettings(max_upload_bytes=LIMIT, thumbnail_dir=str(tmp_path / "thumbs"), clusters="3",
                             allowed_hosts=(TESTSERVER,))
    with TestClient(create_app(str(tmp_path / "store"), settings, encoder=lite0_encoder)) as c:
        state = state_of(c)
        assert state.index.kind == "ivfpq"
        nearest = c.get("/api/items/0/similar", params={"k": 3}).json()
        within = c.get("/api/items/0/similar", params={"k": 5, "radius": 0.5}).json()
        assert "_vectors" not in state.store.__dict__ and state.index._vectors is None
    vectors = Store.open(served[0]).vectors
    sims = vectors @ vectors[0]
    order = [int(i) for i in np.lexsort((np.arange(len(sims)), -sims)) if i != 0]
    assert [n["id"] for n in nearest["neighbors"]] == order[:3]
    assert [n["id"] for n in within["neighbors"]] == [i for i in order if sims[i] >= 0.5][:5]
    assert within["within"] == sum(1 for i in order if sims[i] >= 0.5)
