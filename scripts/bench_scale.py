"""Scale benchmark: synthetic stores of N clustered unit vectors, every step a real CLI process.

For each N (default 100k, 1M, 5M; float16 storage above 1M) it builds a store of N clustered
1280-d unit vectors with planted near-duplicate pairs directly through the Store API (segments of
--segment-rows rows, generated chunk by chunk, so building 5M never holds more than one chunk in
memory), then runs each step as a child process and measures its wall time, CPU time and peak RSS
(`os.wait4`: the child's own rusage):

- info:    `artenc info STORE --json` (counts only)
- index:   `artenc index STORE` (kind auto; saved in the store)
- query:   1,000 single-vector queries (stored works plus noise, cosine ~0.96) against the saved
           index through the Python API in one child (the CLI would reload per query): latency
           per query, and recall@10 against exact search on a sample (--recall-sample queries)
- similar: `artenc similar STORE PATH -k 10 --json` for one stored work (loads the saved index)
- dedup:   `artenc dedup STORE --no-verify --json`: planted pairs found in one group
- cluster: `artenc cluster STORE --k auto --json`

It prints a markdown table, the growth exponent of time and peak RSS of each step from the
smallest to the largest N (log ratio / log ratio of N), and the load average. A failing or timed
out step is a row of the table, not a crash (--timeout per step). With --baseline-src DIR the
info, similar, dedup and cluster steps also run with another checkout's sources (DIR/src first on PYTHONPATH),
in the same run, for a before/after comparison.

    python scripts/bench_scale.py --sizes 100000 --steps build,info,index,query,similar
    python scripts/bench_scale.py --sizes 1000000 --steps build,info --baseline-src /work/main --keep

Stores live under --work (default /tmp/bench_scale/n<N>) and are deleted at the end unless --keep;
results accumulate in --work/results.json, so a step rerun alone (--steps dedup) joins the table.
"""

from __future__ import annotations

# This process imports only the standard library: Linux counts the parent's memory at fork into
# a child's peak RSS (ru_maxrss survives exec), so a small parent keeps the children's figures
# honest. The store is built in a child too (`--build-one`).
import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIM = 1280
STEPS = ("build", "info", "index", "query", "similar", "dedup", "cluster")

QUERY_CHILD = r"""
import json, sys, time
import numpy as np
from artenc.index import index_for_store
from artenc.store import Store

root, n_queries, n_exact, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
k = 10
t0 = time.perf_counter()
store = Store.open(root)
vindex = index_for_store(store)
load_s = time.perf_counter() - t0
rng = np.random.default_rng(seed)
rows = np.sort(rng.choice(len(store), size=min(n_queries, len(store)), replace=False))
noise = rng.standard_normal((len(rows), store.dim)).astype(np.float32)
noise /= np.linalg.norm(noise, axis=1, keepdims=True)
q = store.vectors_at(rows) + 0.3 * noise
q /= np.linalg.norm(q, axis=1, keepdims=True)
latency, found = [], []
for v in q:
    t = time.perf_counter()
    _, ids = vindex.search(v[None, :], k)
    latency.append(time.perf_counter() - t)
    found.append(ids[0])
sample = q[:n_exact]
best_s = np.full((len(sample), k), -np.inf, dtype=np.float32)
best_i = np.full((len(sample), k), -1, dtype=np.int64)
for off, block in store.vector_blocks():
    s = sample @ block.T
    cand_s = np.concatenate([best_s, s], axis=1)
    cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(off, off + len(block)), s.shape)], axis=1)
    top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
    best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
recall = float(np.mean([len(set(found[j].tolist()) & set(best_i[j].tolist())) / k for j in range(len(sample))]))
lat = np.array(latency) * 1000
print(json.dumps({"load_s": round(load_s, 2), "queries": len(q), "kind": vindex.kind,
                  "ms_median": round(float(np.median(lat)), 2), "ms_p95": round(float(np.percentile(lat, 95)), 2),
                  "recall_at_10": round(recall, 4), "recall_sample": len(sample)}))
"""


# ----- building ------------------------------------------------------------------------------
def build_store(root: Path, n: int, *, dtype: str, pairs: int, segment_rows: int, n_clusters: int,
                seed: int) -> dict:
    """A store of n unit vectors around `n_clusters` random centres (cosine to the centre 0.8) in
    segments of `segment_rows`; `pairs` planted near-duplicate pairs (cosine ~0.97), each inside
    one segment, saved as ROOT-planted.json (item rows; paths sort like row numbers)."""
    import numpy as np
    import pandas as pd

    from artenc.store import BASE_COLUMNS, ModelSignature, Store

    if root.exists():
        shutil.rmtree(root)
    store = Store.create(root, ModelSignature("synthetic", "bench-scale", {}, DIM), dtype=dtype)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    within = 0.8
    planted = []
    n_segments = math.ceil(n / segment_rows)
    per_segment = np.diff(np.linspace(0, pairs, n_segments + 1).astype(int))
    for s, start in enumerate(range(0, n, segment_rows)):
        m = min(segment_rows, n - start)
        x = rng.standard_normal((m, DIM), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x *= np.sqrt(1 - within**2)
        x += within * centres[rng.integers(0, n_clusters, m)]
        p = min(int(per_segment[s]), m // 2)
        if p:
            src, dst = rng.choice(m, size=(2, p), replace=False)
            jitter = rng.standard_normal((p, DIM), dtype=np.float32)
            jitter /= np.linalg.norm(jitter, axis=1, keepdims=True)
            x[dst] = x[src] + 0.25 * jitter
            planted.append(np.stack([src + start, dst + start], axis=1))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = np.arange(start, start + m)
        paths = [f"/bench/w{i:09d}.jpg" for i in ids]
        rows = pd.DataFrame({"path": paths, "relpath": [p[7:] for p in paths],
                             "sha256": [f"{i:064x}" for i in ids], "size": 100_000, "mtime_ns": 0,
                             "width": 1024, "height": 768, "error": None, "row": np.arange(m)},
                            columns=BASE_COLUMNS)
        store.append_segment(rows, x)
        del x, rows, paths
    pairs_arr = np.concatenate(planted) if planted else np.zeros((0, 2), np.int64)
    planted_path(root).write_text(json.dumps(pairs_arr.tolist()))
    size = sum(f.stat().st_size for f in store.segment_dir.iterdir())
    return {"segments": len(store.segment_ids()), "planted": len(pairs_arr), "bytes": size}


# ----- running children ----------------------------------------------------------------------
def planted_path(root: Path) -> Path:
    return root.parent / f"{root.name}-planted.json"


def run_child(cmd: list[str], timeout: float, env: dict) -> dict:
    """Run `cmd`; wall seconds, CPU seconds and peak RSS (MB) of the child from `os.wait4`; stdout
    (a temporary file, so no pipe can fill); status ok / exit N / timeout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        status = None
        while True:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, code, usage = os.wait4(proc.pid, 0)
                status = "timeout"
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(code)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if status is None:
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    return {"status": status, "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": stdout, "stderr_tail": stderr[-600:]}


def artenc(*args: str) -> list[str]:
    return [sys.executable, "-m", "artenc.cli", *args]


def child_env(src: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO / "scraping"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def _json(stdout: str) -> dict | None:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return None


def detail_of(step: str, res: dict, root: Path) -> str:
    """The step's own figures from its JSON output."""
    doc = _json(res["stdout"]) if res["status"] == "ok" else None
    if res["status"] != "ok":
        return res["stderr_tail"].strip().splitlines()[-1][:120] if res["stderr_tail"].strip() else ""
    if doc is None:
        return ""
    if step.startswith("info"):
        return f"count {doc['count']}"
    if step == "index":
        return f"{doc.get('kind', '?')}"
    if step == "query":
        return (f"{doc['kind']}: {doc['ms_median']} ms median, {doc['ms_p95']} ms p95 per query; recall@10 "
                f"{doc['recall_at_10']} ({doc['recall_sample']} exact); load {doc['load_s']} s")
    if step.startswith("similar"):
        return f"{len(doc['results'][0]['neighbors'])} neighbours" if "results" in doc else ""
    if step.startswith("dedup"):
        planted = json.loads(planted_path(root).read_text())
        group_of = {}
        for g, group in enumerate(doc["groups"]):
            for p in [group["keep"], *(d["path"] for d in group["duplicates"])]:
                group_of[p] = g
        name = lambda i: f"/bench/w{int(i):09d}.jpg"  # noqa: E731
        found = sum(1 for a, b in planted if group_of.get(name(a), -1) == group_of.get(name(b), -2))
        return f"{found}/{len(planted)} planted pairs found; {doc['duplicate_pairs']} pairs, {len(doc['groups'])} groups"
    if step.startswith("cluster"):
        return f"k = {doc.get('k')}" if "k" in doc else ", ".join(f"{k}" for k in list(doc)[:4])
    return ""


def step_command(step: str, root: Path, args: argparse.Namespace) -> list[str]:
    if step.startswith("info"):
        return artenc("info", str(root), "--json")
    if step == "index":
        return artenc("index", str(root), "--json")
    if step == "query":
        return [sys.executable, "-c", QUERY_CHILD, str(root), str(args.queries), str(args.recall_sample), "0"]
    if step.startswith("similar"):
        return artenc("similar", str(root), "/bench/w000000000.jpg", "-k", "10", "--json")
    if step == "dedup":
        return artenc("dedup", str(root), "--no-verify", "--json")
    if step == "cluster":
        return artenc("cluster", str(root), "--k", "auto", "--json")
    raise ValueError(step)


# ----- report --------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    lines = ["| step | N | dtype | status | wall s | CPU s | peak RSS MB | load | detail |",
             "|---|---:|---|---|---:|---:|---:|---:|---|"]
    order = {s: i for i, s in enumerate(STEPS)}
    for r in sorted(results, key=lambda r: (r["n"], order.get(r["step"].split(" ")[0], 99), r["step"])):
        lines.append(f"| {r['step']} | {r['n']:,} | {r['dtype']} | {r['status']} | {r['wall_s']} | {r['cpu_s']} | "
                     f"{r['rss_mb']} | {r['load']} | {r['detail']} |")
    return "\n".join(lines)


def exponents(results: list[dict]) -> str:
    """Growth exponent b of t ~ N^b (and of peak RSS) per step, from the smallest to the largest N."""
    lines = ["| step | from N | to N | time exponent | CPU exponent | peak RSS exponent |",
             "|---|---:|---:|---:|---:|---:|"]
    for step in dict.fromkeys(r["step"] for r in results):
        ok = sorted((r for r in results if r["step"] == step and r["status"] == "ok"), key=lambda r: r["n"])
        if len(ok) < 2 or ok[0]["n"] == ok[-1]["n"]:
            continue
        a, b = ok[0], ok[-1]
        span = math.log(b["n"] / a["n"])
        t = math.log(max(b["wall_s"], 1e-3) / max(a["wall_s"], 1e-3)) / span
        c = math.log(max(b["cpu_s"], 1e-3) / max(a["cpu_s"], 1e-3)) / span
        m = math.log(b["rss_mb"] / a["rss_mb"]) / span
        lines.append(f"| {step} | {a['n']:,} | {b['n']:,} | {t:.2f} | {c:.2f} | {m:.2f} |")
    return "\n".join(lines)


def ratios(results: list[dict]) -> str:
    """Candidate / baseline wall and CPU time of each step run both ways (--baseline-src)."""
    lines = ["| step | N | wall ratio | CPU ratio | peak RSS ratio |", "|---|---:|---:|---:|---:|"]
    for r in results:
        base = next((b for b in results if b["step"] == f"{r['step']} (baseline)" and b["n"] == r["n"]
                     and b["status"] == "ok" and r["status"] == "ok"), None)
        if base:
            lines.append(f"| {r['step']} | {r['n']:,} | {r['wall_s'] / max(base['wall_s'], 1e-3):.3f} | "
                         f"{r['cpu_s'] / max(base['cpu_s'], 1e-3):.3f} | {r['rss_mb'] / base['rss_mb']:.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--build-one"]:  # the child that builds one store
        root, n, dtype, pairs, segment_rows, clusters = argv[1:7]
        sys.path.insert(0, str(REPO / "src"))
        doc = build_store(Path(root), int(n), dtype=dtype, pairs=int(pairs), segment_rows=int(segment_rows),
                          n_clusters=int(clusters), seed=int(n))
        print(json.dumps(doc))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000,5000000", help="comma-separated N (default: %(default)s)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_scale"), help="stores and results.json")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    ap.add_argument("--keep", action="store_true", help="keep the stores (a later --steps run reuses them)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per step before it is killed")
    ap.add_argument("--pairs", type=int, default=1000, help="planted near-duplicate pairs per store")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--recall-sample", type=int, default=200, help="queries checked against exact search")
    ap.add_argument("--segment-rows", type=int, default=100_000, help="rows per segment (and per built chunk)")
    ap.add_argument("--clusters", type=int, default=1000, help="centres of the synthetic clusters")
    ap.add_argument("--float16-above", type=int, default=1_000_000, help="float16 storage for larger N")
    ap.add_argument("--baseline-src", type=Path,
                    help="also run info/similar/dedup/cluster with DIR/src (before/after)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    env = child_env(REPO / "src")
    print(f"load average at start: {os.getloadavg()}; cpus {os.cpu_count()}", flush=True)
    for n in sizes:
        dtype = "float16" if n > args.float16_above else "float32"
        root = args.work / f"n{n}"
        runs: list[tuple[str, dict]] = []
        if "build" in steps or not (root / "meta.json").is_file():
            res = run_child([sys.executable, __file__, "--build-one", str(root), str(n), dtype, str(args.pairs),
                             str(args.segment_rows), str(args.clusters)], args.timeout, env)
            doc = _json(res["stdout"]) if res["status"] == "ok" else None
            res["detail"] = (f"{doc['segments']} segments, {doc['bytes'] / 1e9:.2f} GB, {doc['planted']} planted pairs"
                             if doc else res["stderr_tail"].strip()[-120:])
            runs.append(("build", res))
            print(f"n={n} build: {res['status']} {res['wall_s']} s, {res['rss_mb']} MB; {res['detail']}", flush=True)
        for step in steps:
            if step == "build":
                continue
            variants = [(step, env)]
            if args.baseline_src and step in ("info", "similar", "dedup", "cluster"):
                variants.insert(0, (f"{step} (baseline)", child_env(args.baseline_src / "src")))
            for name, e in variants:
                res = run_child(step_command(step, root, args), args.timeout, e)
                res["detail"] = detail_of(name, res, root)
                runs.append((name, res))
                print(f"n={n} {name}: {res['status']} {res['wall_s']} s, {res['rss_mb']} MB; {res['detail']}",
                      flush=True)
        load = round(os.getloadavg()[0], 2)
        for name, res in runs:
            results = [r for r in results if not (r["step"] == name and r["n"] == n)]
            results.append({"step": name, "n": n, "dtype": dtype, "load": load,
                            **{k: res[k] for k in ("status", "wall_s", "cpu_s", "rss_mb", "detail")}})
        results_path.write_text(json.dumps(results, indent=1))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            planted_path(root).unlink(missing_ok=True)
    print()
    print(table(results))
    print()
    print(exponents(results))
    print(ratios(results))
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
