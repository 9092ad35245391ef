"""Load test of `artenc serve`: N concurrent clients upload photos to /api/search on loopback.

The server runs as its own process (`artenc serve`, exactly what users start), so the
load generator does not share its interpreter. Each client posts an image, waits for
the answer, and posts again (closed loop; `--think S` adds a pause between requests),
for `--duration` seconds after a warm-up. Reports per concurrency level: requests,
errors (non-200 or transport failures), throughput, p50/p95/p99/max latency.

Without --store, a synthetic store of --items random unit vectors is built with the
real lite0 model signature (so uploads are embedded by the real encoder and searched
among 10k vectors; search cost does not depend on what the vectors are). Uploads are
generated 1600x1200 JPEG "photos" (~0.5 MB) unless --image files are given.

    python scripts/bench_serve.py [--items 10000] [--clients 1,10,50] [--duration 20] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STYLES = ["baroque", "cubism", "impressionism", "realism", "romanticism", "ukiyo-e"]


def synthetic_store(path: Path, n: int, seed: int = 0) -> Path:
    """A store of n random unit vectors with lite0's signature and a random `style` label."""
    import pandas as pd

    from artenc.runtime import create_encoder
    from artenc.store import BASE_COLUMNS, Store, l2_normalize

    signature = create_encoder("tf_efficientnet_lite0", runtime="onnx", device="cpu").signature
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.standard_normal((n, signature.dim)).astype(np.float32))
    store = Store.create(path, signature)
    paths = [f"/synthetic/work_{i:06d}.jpg" for i in range(n)]
    rows = pd.DataFrame({
        "path": paths, "relpath": [p.rsplit("/", 1)[1] for p in paths],
        "sha256": [f"{i:064x}" for i in range(n)], "size": 100_000, "mtime_ns": 0,
        "width": 1200, "height": 900, "error": None, "row": np.arange(n),
    }, columns=BASE_COLUMNS)
    store.append_segment(rows, vectors)
    store.set_labels(pd.DataFrame({"path": paths, "style": rng.choice(STYLES, n)}))
    return path


def photos(count: int, size: tuple[int, int] = (1600, 1200), seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs: smooth colour fields plus noise (so they compress like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(count):
        f = rng.uniform(0.002, 0.02, 3)
        arr = np.stack([127 + 100 * np.sin(xx * f[c] + yy * f[(c + 1) % 3] + c) for c in range(3)], axis=-1)
        arr += rng.normal(0, 12, arr.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, port: int, timeout: float = 180.0) -> subprocess.Popen:
    """`artenc serve STORE --port PORT` in a subprocess; returns once /api/health answers."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "artenc.cli", "serve", str(store), "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start in time")


BOUNDARY = "artenc-bench-boundary"


def multipart(data: bytes) -> bytes:
    """The request body of one upload, built once (so the load generator stays cheap)."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client_loop(http, url: str, bodies: list[bytes], k: int, stop_at: float, warm_until: float,
                      think: float, offset: int, latencies: list[float], errors: list[str]) -> None:
    i = offset
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    while time.monotonic() < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.monotonic()
        try:
            r = await http.post(url, params={"k": k}, content=body, headers=headers)
            ok = r.status_code == 200 and len(r.json()["neighbors"]) == k
            problem = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted, not raised
            problem = f"{type(exc).__name__}: {exc}"
        if t0 >= warm_until:
            latencies.append(time.monotonic() - t0)
            if problem:
                errors.append(problem)
        if think:
            await asyncio.sleep(think)


async def run_level(base: str, bodies: list[bytes], clients: int, k: int, duration: float, warmup: float,
                    think: float, server_pid: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        start = time.monotonic()
        warm_until, stop_at = start + warmup, start + warmup + duration
        tasks = asyncio.gather(*(client_loop(http, f"{base}/api/search", bodies, k, stop_at, warm_until, think, c,
                                             latencies, errors) for c in range(clients)))
        await asyncio.sleep(warmup)
        cpu0 = cpu_seconds(server_pid)
        await tasks
        elapsed = time.monotonic() - warm_until
        server_cpu = cpu_seconds(server_pid) - cpu0
    ms = np.asarray(latencies) * 1000
    pct = (lambda q: round(float(np.percentile(ms, q)), 1)) if len(ms) else (lambda q: None)
    return {"clients": clients, "requests": len(ms), "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "throughput_rps": round(len(ms) / elapsed, 1), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": round(float(ms.max()), 1) if len(ms) else None,
            "server_cpu_ms_per_request": round(1000 * server_cpu / max(len(ms), 1), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="an existing store (default: build a synthetic one)")
    ap.add_argument("--items", type=int, default=10_000, help="size of the synthetic store")
    ap.add_argument("--clients", default="1,10,50", help="comma-separated concurrency levels")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per level")
    ap.add_argument("--think", type=float, default=0.0, help="pause between a client's requests (s)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--image", action="append", default=[], help="upload these files (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        os.environ.setdefault("ARTENC_CACHE_DIR", str(Path(tmp) / "cache"))
        store = Path(args.store) if args.store else synthetic_store(Path(tmp) / "store", args.items)
        uploads = [Path(p).read_bytes() for p in args.image] or photos(8)
        port = free_port()
        server = start_server(store, port)
        try:
            from artenc.store import Store

            report = {"store": str(store), "items": len(Store.open(store)), "k": args.k, "cpus": os.cpu_count(),
                      "upload_kb": round(float(np.mean([len(u) for u in uploads])) / 1024, 1),
                      "think_s": args.think, "levels": []}
            for clients in (int(c) for c in args.clients.split(",")):
                level = asyncio.run(run_level(f"http://127.0.0.1:{port}", [multipart(u) for u in uploads], clients,
                                              args.k, args.duration, args.warmup, args.think, server.pid))
                report["levels"].append(level)
                print(f"{clients:4d} clients: {level['requests']:6d} requests, {level['errors']} errors, "
                      f"{level['throughput_rps']:6.1f} req/s, p50 {level['p50_ms']} ms, p95 {level['p95_ms']} ms, "
                      f"p99 {level['p99_ms']} ms, max {level['max_ms']} ms; "
                      f"server CPU {level['server_cpu_ms_per_request']} ms/request", file=sys.stderr, flush=True)
        finally:
            server.terminate()
            server.wait(10)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
