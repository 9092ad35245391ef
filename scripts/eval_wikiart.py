"""Raw backbone vs trained encoder on the WikiArt holdout (the closing table of issue 4).

    python scripts/eval_wikiart.py --encoder runs/wikiart_supcon/encoder.pt --work /tmp/wikiart_eval

Embeds ../shared/data/wikiart_style (dev + holdout) with both encoders into stores under
--work (reused when present), then reports P@10, mAP@10, R@10, kNN and linear-probe accuracy
for style: leave-one-out within holdout, and holdout queries against the dev gallery.
Holdout rows are only ever queries here; nothing is tuned on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from artenc.embedding import embed_folders
from artenc.evaluate import evaluate_store
from artenc.report.tables import evaluation_table
from artenc.store import Store

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wikiart_style"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", required=True, help="encoder.pt written by `artenc train`")
    p.add_argument("--raw-model", default="tf_efficientnet_lite0")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--work", required=True, help="folder for the two stores")
    p.add_argument("--json", metavar="PATH", help="also write the reports as JSON")
    args = p.parse_args()
    data, work = Path(args.data), Path(args.work)
    if not (data / "labels.csv").is_file():
        print(f"{data}: WikiArt data not found", file=sys.stderr)
        return 2
    stores = {"raw": (work / "raw", args.raw_model), "trained": (work / "trained", args.encoder)}
    reports = []
    for name, (store, model) in stores.items():
        embed_folders([data / "images"], store, model=model, labels=data / "labels.csv")
        for gallery in ("holdout", "dev"):
            report = evaluate_store(Store.open(store), ["style"], k=10, query_split="holdout", gallery_split=gallery)
            r = report.to_dict()  # the --json document of `artenc evaluate`
            r["store"] = f"{name} (holdout -> {gallery}{', leave-one-out' if gallery == 'holdout' else ''})"
            reports.append(r)
    print(evaluation_table(reports, 10))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
