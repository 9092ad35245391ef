"""Peak memory of one image through `artenc embed` and through one upload to `artenc serve`.

Issue 12, case 1: a 1 x 10,000 PNG (125 bytes) once cost +2.6 GB in `embed` and in one
upload; 1 x 9,000,000 answered 500. This measures, for each generated file, the peak
resident memory of a fresh process (`os.wait4`'s ru_maxrss: the process and the children
it waited for) that

- embed: runs `artenc embed FOLDER --out STORE --workers 0 --runtime onnx` on a folder
  holding only that file (one process decodes and encodes, so its peak is the whole cost);
- serve: builds the web app on a small store in-process (FastAPI TestClient, the encoder
  of `artenc serve`) and posts the file once to /api/search (status and seconds shown);

and divides it by the same measurement for a normal 2000 x 1500 JPEG (target: <= 1.5x). Both
processes hold a model (about 1.3 GB), so a third column measures a process that only runs
`images.decode_crop` on the file: the decoding's own cost, without the model to hide it.
Files: the worst geometries at the pixel limit (1 x MAX_PIXELS and MAX_PIXELS x 1 PNG, refused
from the header by the aspect-ratio guard), the issue's 1 x 10,000 and 1 x 9,000,000 PNGs,
the widest JPEG accepted (1:100, 655 x 65,500) and a 13,000 x 13,000 JPEG near the pixel
limit (DCT-scaled decoding). With --lossless-at-limit, also a 1,337 x 133,700 PNG (1:100 at
the pixel limit): lossless formats are decoded whole, so their cost is bounded by MAX_PIXELS
(a few bytes a pixel), not by the geometry. All inputs are generated in a temporary folder.

    python scripts/bench_memory.py [--lossless-at-limit] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from artenc.defaults import MAX_ASPECT_RATIO, MAX_PIXELS

MB = 2**20
ARTENC = [sys.executable, "-c", "import sys; from artenc.cli import main; sys.exit(main())"]  # the `artenc` command

_SERVE = r"""
import json, sys, time
from fastapi.testclient import TestClient
from artenc.serve.app import create_app
from artenc.serve.state import ServeSettings
store, image, thumbs = sys.argv[1:4]
settings = ServeSettings(thumbnail_dir=thumbs, clusters="2", workers=1, verify_duplicates=False)
data = open(image, "rb").read()
with TestClient(create_app(store, settings)) as client:
    t0 = time.perf_counter()
    r = client.post("/api/search", files={"file": (image.rsplit("/", 1)[-1], data)})
    print(json.dumps({"status": r.status_code, "seconds": round(time.perf_counter() - t0, 3),
                      "detail": r.json().get("detail", "") if r.status_code != 200 else ""}))
"""


_DECODE = r"""
import sys
from artenc.images import ImageLoadError, decode_crop
from artenc.preprocess import PreprocessConfig
try:
    decode_crop(sys.argv[1], PreprocessConfig())
    print("decoded")
except ImageLoadError as exc:
    print("refused")
"""


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(path: Path, width: int, height: int) -> Path:
    """A mid-grey 8-bit greyscale PNG of any size, written row block by row block (zlib streamed)."""
    z = zlib.compressobj(9)
    parts = []
    row = b"\0" + b"\x80" * width  # filter byte 0, then the pixels
    rows_per_block = max(1, (4 * MB) // len(row))
    for start in range(0, height, rows_per_block):
        parts.append(z.compress(row * min(rows_per_block, height - start)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
                     + _png_chunk(b"IEND", b""))
    return path


def photo_jpeg(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A JPEG "photo": smooth colour fields plus fine noise (so it compresses like a photo)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8))
    img = small.resize((width, height), Image.Resampling.BILINEAR)
    if width * height <= 4_000_000:
        arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    img.save(path, "JPEG", quality=90)
    return path


_LAUNCH = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as out:
    proc = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "seconds": time.perf_counter() - t0}))
"""


def peak_of(cmd: list[str], env: dict, ok: tuple[int, ...] = (0,)) -> tuple[int, str, float]:
    """Run `cmd`; its peak resident memory (bytes), stdout, and seconds. Raises RuntimeError
    when it exits with a status not in `ok`.

    The peak is `os.wait4`'s ru_maxrss, taken by a small launcher process: Linux carries the
    peak of the process that forks (or vforks) into the child's ru_maxrss, and this script's
    own peak (the generated images) would otherwise be counted in every row.
    """
    with tempfile.NamedTemporaryFile(suffix=".out") as out:
        launched = subprocess.run([sys.executable, "-c", _LAUNCH, out.name, *cmd], env=env, check=True,
                                  capture_output=True, text=True)
        result = json.loads(launched.stdout)
        text = Path(out.name).read_text(errors="replace")
    if result["rc"] not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {result['rc']}: {text[-2000:]}")
    return result["maxrss_kib"] * 1024, text, result["seconds"]  # Linux counts KiB


def embed_peak(image: Path, work: Path, env: dict) -> dict:
    folder = work / f"embed-{image.stem}"
    folder.mkdir()
    os.link(image, folder / image.name)
    cmd = [*ARTENC, "embed", str(folder), "--out", str(work / f"store-{image.stem}"),
           "--workers", "0", "--runtime", "onnx", "--device", "cpu", "--json"]
    peak, out, seconds = peak_of(cmd, env, ok=(0, 2))  # 2: some file was skipped
    report = json.loads(out)
    reason = report["skipped_files"][0]["reason"] if report["skipped_files"] else ""
    return {"peak": peak, "seconds": seconds, "outcome": "embedded" if report["embedded"] else f"skipped: {reason}"}


def decode_peak(image: Path, env: dict) -> dict:
    peak, out, seconds = peak_of([sys.executable, "-c", _DECODE, str(image)], env)
    return {"peak": peak, "seconds": seconds, "outcome": out.strip()}


def serve_peak(image: Path, store: Path, work: Path, env: dict) -> dict:
    peak, out, _ = peak_of([sys.executable, "-c", _SERVE, str(store), str(image), str(work / "thumbs")], env)
    answer = json.loads(out.strip().splitlines()[-1])
    outcome = f"{answer['status']}" + (f": {answer['detail']}" if answer["detail"] else "")
    return {"peak": peak, "seconds": answer["seconds"], "outcome": outcome}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lossless-at-limit", action="store_true",
                    help="also a 1,337 x 133,700 PNG (1:100 at the pixel limit; ~0.8 GB to decode)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="artenc-bench-memory-") as tmp:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        thin = MAX_PIXELS  # 1 x MAX_PIXELS: the most extreme geometry the pixel guard lets through
        side = int(MAX_PIXELS**0.5 / MAX_ASPECT_RATIO**0.5)
        cases = [
            ("normal 2000x1500 JPEG", photo_jpeg(files / "normal.jpg", 2000, 1500)),
            (f"1x{thin} PNG (pixel limit)", grey_png(files / "tall_limit.png", 1, thin)),
            (f"{thin}x1 PNG (pixel limit)", grey_png(files / "wide_limit.png", thin, 1)),
            ("1x10000 PNG (issue)", grey_png(files / "tall_10k.png", 1, 10_000)),
            ("1x9000000 PNG (issue)", grey_png(files / "tall_9m.png", 1, 9_000_000)),
            ("655x65500 JPEG (1:100)", photo_jpeg(files / "jpeg_1to100.jpg", 655, 65_500)),
            ("13000x13000 JPEG (169 MP)", photo_jpeg(files / "jpeg_13k.jpg", 13_000, 13_000)),
        ]
        if args.lossless_at_limit:
            cases.append((f"{side}x{side * 100} PNG (1:100, pixel limit)",
                          grey_png(files / "png_1to100_limit.png", side, side * 100)))

        # a small store to serve, and a warm cache (ONNX export) before anything is measured
        gallery = work / "gallery"
        gallery.mkdir()
        for i in range(4):
            photo_jpeg(gallery / f"w{i}.jpg", 320, 256, seed=i + 1)
        store = work / "store"
        subprocess.run([*ARTENC, "embed", str(gallery), "--out", str(store),
                        "--workers", "0", "--runtime", "onnx", "--device", "cpu", "--json"],
                       env=env, check=True, capture_output=True)

        rows = []
        for label, path in cases:
            row = {"file": label, "bytes": path.stat().st_size}
            row["decode"] = decode_peak(path, env)
            row["embed"] = embed_peak(path, work, env)
            row["serve"] = serve_peak(path, store, work, env)
            rows.append(row)
            print(f"measured {label}", file=sys.stderr)
    load_after = os.getloadavg()

    base = rows[0]
    for row in rows:
        for face in ("decode", "embed", "serve"):
            row[face]["ratio"] = round(row[face]["peak"] / base[face]["peak"], 3)
    if args.json:
        print(json.dumps({"rows": rows, "loadavg_before": load_before, "loadavg_after": load_after}, indent=1))
        return
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
          f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)")
    print(f"MAX_PIXELS = {MAX_PIXELS}, MAX_ASPECT_RATIO = {MAX_ASPECT_RATIO}; ratio = peak / peak of the normal JPEG"
          " (target <= 1.5)\n")
    print("| file | bytes | decode_crop MB (ratio) | embed peak MB | embed ratio | embed outcome | serve peak MB "
          "| serve ratio | upload s | serve answer |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        d, e, s = r["decode"], r["embed"], r["serve"]
        print(f"| {r['file']} | {r['bytes']:,} | {d['peak'] / MB:.0f} ({d['ratio']:.2f}) | {e['peak'] / MB:.0f} "
              f"| {e['ratio']:.2f} | {_short(e['outcome'])} | {s['peak'] / MB:.0f} | {s['ratio']:.2f} "
              f"| {s['seconds']:.2f} | {_short(s['outcome'])} |")


def _short(text: str, n: int = 70) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


if __name__ == "__main__":
    main()
