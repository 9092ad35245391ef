#!/usr/bin/env bash
# Check artenc's GPU path on a machine with a GPU (issue 13, item 5), and print a short summary.
#
#   scripts/device_check.sh [--cpu] [--n N] [--per-style K] [--workers W] [--workdir DIR] [--keep]
#
# 1. `artenc embed --device cuda` on the WikiArt images (../shared/data/wikiart_style, or
#    $ARTENC_WIKIART): images/s, and every vector compared with a CPU store of the same images
#    (ONNX Runtime float32): cosine >= 1 - 1e-3 for each work, same paths.
# 2. One epoch of `artenc train trainer=gpu data.mode=full` on a small WikiArt dev subset
#    (K dev images per style, holdout rows never read): it must finish and export an encoder.
#
# --cpu: the same script with no GPU (torch on the CPU stands in for cuda, trainer=cpu), to check
#        the script itself anywhere; --n: images embedded (default: all); --per-style: training
#        images per style (default 40); --workers: decoding processes of both embeds (default:
#        the cores, at most 16); --workdir: where stores and runs go (default: a temp dir,
#        removed at the end unless --keep). Exit 0 when every check passes, 1 when one fails,
#        2 on bad arguments or missing data/GPU. Run it from the repository root with artenc
#        importable (`pip install -e .` or PYTHONPATH=src).
set -euo pipefail

MODE=cuda N=0 PER_STYLE=40 WORKDIR="" KEEP=0 WORKERS=$(( $(nproc) < 16 ? $(nproc) : 16 ))
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --n) N="${2:-}"; shift ;;
    --per-style) PER_STYLE="${2:-}"; shift ;;
    --workers) WORKERS="${2:-}"; shift ;;
    --workdir) WORKDIR="${2:-}"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "device_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift || true  # an option missing its value has consumed the last argument
done
[[ "$N" =~ ^[0-9]+$ && "$PER_STYLE" =~ ^[0-9]+$ && "$WORKERS" =~ ^[0-9]+$ ]] \
  || { echo "device_check: --n, --per-style and --workers take integers" >&2; exit 2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WIKIART="${ARTENC_WIKIART:-$ROOT/../shared/data/wikiart_style}"
PY="${PYTHON:-python}"
ARTENC="${ARTENC:-artenc}"  # the console script
if [[ ! -f "$WIKIART/labels.csv" ]]; then
  echo "device_check: WikiArt not found at $WIKIART (set ARTENC_WIKIART)" >&2; exit 2
fi
if [[ -z "$WORKDIR" ]]; then
  WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/artenc-device-check.XXXXXX")"
  [[ "$KEEP" == 1 ]] || trap 'rm -rf "$WORKDIR"' EXIT
fi
KEPT="summary: $WORKDIR/summary.txt"
[[ -n "$(trap -p EXIT)" ]] && KEPT="$WORKDIR removed; --keep keeps it"
mkdir -p "$WORKDIR"
SUMMARY="$WORKDIR/summary.txt"
: > "$SUMMARY"
FAILED=0
note() { echo "$*" | tee -a "$SUMMARY"; }

# ----- the machine ----------------------------------------------------------------------
if ! "$PY" -c "import artenc" 2>/dev/null || ! command -v "$ARTENC" >/dev/null; then
  echo "device_check: artenc is not importable with $PY or $ARTENC is not on PATH (pip install -e .)" >&2; exit 2
fi
GPU="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')"
if [[ "$MODE" == cuda && -z "$GPU" ]]; then
  echo "device_check: torch sees no CUDA device (use --cpu to check the script without one)" >&2; exit 2
fi
note "device_check mode=$MODE gpu=${GPU:-none} torch=$("$PY" -c 'import torch; print(torch.__version__)') \
cores=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg) date=$(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | sed 's/^/nvidia-smi: /' | tee -a "$SUMMARY" || true

# ----- the images: all WikiArt images (or the first N), and a small dev subset to train on ----
IMAGES="$WORKDIR/images"
"$PY" - "$WIKIART" "$IMAGES" "$N" "$PER_STYLE" "$WORKDIR/train_labels.csv" <<'EOF'
import os, sys
from pathlib import Path
import pandas as pd
wikiart, images, n, per_style, train_csv = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
table = pd.read_csv(wikiart / "labels.csv")
rows = table if n == 0 else table.head(n)
images.mkdir(parents=True, exist_ok=True)
for rel in rows["path"]:  # symlinks: the same files, one flat folder, nothing copied
    link = images / rel.replace("/", "__")
    if not link.exists():
        os.symlink((wikiart / rel).resolve(), link)
dev = table[table["split"] == "dev"]
dev.groupby("style", sort=True).head(per_style).to_csv(train_csv, index=False)
print(f"images: {len(rows)} to embed, {min(len(dev), per_style * dev['style'].nunique())} dev rows to train on")
EOF

# ----- 1. embed on the device, and on the CPU with ONNX Runtime -----------------------------
if [[ "$MODE" == cuda ]]; then DEV_ARGS=(--device cuda); else DEV_ARGS=(--device cpu --runtime torch); fi
embed() {  # embed STORE ARGS...: runs `artenc embed --json`, keeps its report
  local store="$1"; shift
  "$ARTENC" embed "$IMAGES" --out "$WORKDIR/$store" --workers "$WORKERS" --json "$@" > "$WORKDIR/$store.json" \
    2> "$WORKDIR/$store.log"
}
if embed device "${DEV_ARGS[@]}" && embed cpu --device cpu --runtime onnx; then
  "$PY" - "$WORKDIR" <<'EOF' | tee -a "$SUMMARY" || FAILED=1
import json, sys
from pathlib import Path
import numpy as np
from artenc.store import Store
work = Path(sys.argv[1])
dev_report, cpu_report = (json.loads((work / f"{s}.json").read_text()) for s in ("device", "cpu"))
dev, cpu = Store.open(work / "device"), Store.open(work / "cpu")
a, b = dev.items, cpu.items  # sorted by path; `vectors` row i belongs to item i
same_paths = list(a["path"]) == list(b["path"])
cos = (np.asarray(dev.vectors) * np.asarray(cpu.vectors)).sum(axis=1) if same_paths and len(a) else np.zeros(1)
ok = same_paths and len(a) > 0 and float(cos.min()) >= 1 - 1e-3 and dev_report["skipped"] == cpu_report["skipped"]
print(f"embed {dev_report['device']}/{dev_report['runtime']}: {dev_report['embedded']} images, "
      f"{dev_report['images_per_second']} img/s ({dev_report['seconds']} s with model load); "
      f"cpu/{cpu_report['runtime']}: {cpu_report['images_per_second']} img/s")
print(f"vectors: {len(a)} works, same paths {same_paths}, cosine to the CPU store min {cos.min():.6f} "
      f"mean {cos.mean():.6f} (need >= {1 - 1e-3}): {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
else
  note "embed: FAIL (see $WORKDIR/device.log, $WORKDIR/cpu.log)"; tail -n 20 "$WORKDIR"/*.log >&2 || true; FAILED=1
fi

# ----- 2. one epoch of training, images decoded on the fly (data.mode=full) -----------------
if [[ "$MODE" == cuda ]]; then TRAINER=gpu; else TRAINER=cpu; fi
START=$(date +%s)
if "$ARTENC" train data=wikiart "data.root=$WIKIART" "data.labels=$WORKDIR/train_labels.csv" \
    "trainer=$TRAINER" data.mode=full trainer.max_epochs=1 logger=csv data.batch_size=64 \
    "hydra.run.dir=$WORKDIR/train" > "$WORKDIR/train.log" 2>&1 && [[ -f "$WORKDIR/train/encoder.pt" ]]; then
  METRICS="$("$PY" -c 'import sys, pandas as pd
m = pd.read_csv(sys.argv[1]).ffill().iloc[-1].dropna()
print(" ".join(f"{k}={v:.4g}" for k, v in m.items() if "/" in k))' "$(find "$WORKDIR/train" -name metrics.csv | head -n 1)" 2>/dev/null || true)"
  note "train trainer=$TRAINER data.mode=full: 1 epoch in $(( $(date +%s) - START )) s, encoder.pt written: PASS ${METRICS:+(last metrics: $METRICS)}"
else
  note "train trainer=$TRAINER data.mode=full: FAIL (see $WORKDIR/train.log)"; tail -n 30 "$WORKDIR/train.log" >&2 || true
  FAILED=1
fi

note "device_check: $([[ $FAILED == 0 ]] && echo PASS || echo FAIL) ($KEPT)"
exit "$FAILED"
