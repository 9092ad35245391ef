"""`artenc info STORE`: what a store holds (count, dim, model, skipped files, the last embed run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a store", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artenc.commands._output import emit_json
    from artenc.store import Store

    store = Store.open(args.store)
    summary = store.summary()
    if args.json:
        emit_json(summary)
        return 0
    print(f"store        {summary['store']}")
    print(f"vectors      {summary['count']} x {summary['dim']} ({store.dtype}, L2-normalised)")
    print(f"model        {summary['model']} (weights {summary['fingerprint']})")
    print(f"preprocess   {summary['preprocess']}")
    print(f"labels       {', '.join(summary['label_columns']) or '-'}")
    print(f"skipped      {summary['skipped']}")
    for s in summary["skipped_files"]:
        print(f"  {s['path']}: {s['reason']}")
    shards = summary.get("shards")
    if shards:
        left = shards["unfinished"] + shards["not_started"]
        state = "merged" if shards["merged"] else (
            "not merged: run `artenc store merge STORE`" if shards["complete"]
            else f"incomplete: shards {', '.join(map(str, sorted(left)))} have not finished (run them again)")
        print(f"shards       {len(shards['finished'])} of {shards['count']} finished; {state}")
    last = summary.get("last_embed")
    if last:
        n = last["outcomes"]
        print(f"last embed   {n['discovered']} files found: {n['embedded']} embedded, {n['reused']} reused, "
              f"{n['unchanged']} unchanged, {n['skipped']} skipped, {n['not_images']} not images; "
              f"{n['removed']} removed (gone)")
        for path in last["not_image_files"]:
            print(f"  not an image: {path}")
        for f in last["skipped_folders"]:
            print(f"  folder skipped: {f['path']}: {f['reason']}")
        for row in last["unmatched_label_rows"]:
            print(f"  label row matches no image: {row}")
    return 0
