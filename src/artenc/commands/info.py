"""`artenc info STORE`: what a store holds (count, dim, model, skipped files, the last embed run)."""

from __future__ import annotations

import argparse

from artenc.commands._flags import flag_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a store", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _shards(indices: list[int], one: str, many: str) -> str:
    """ "shard 1 has" / "shards 1, 2 have": `one` and `many` are the verb for each number."""
    if len(indices) == 1:
        return f"shard {indices[0]} {one}"
    return f"shards {', '.join(map(str, indices))} {many}"


def _unfinished(shards: dict, running: list[int]) -> str:
    """Why a sharded run is incomplete, in words: shards still running (a live writer mark),
    stopped unfinished (killed or failed: run them again) and not started."""
    stopped = sorted(set(shards["unfinished"]) - set(running))
    parts = []
    if running:
        parts.append(_shards(sorted(running), "is still running", "are still running"))
    if stopped:
        again = "run it again" if len(stopped) == 1 else "run them again"
        parts.append(_shards(stopped, f"stopped unfinished ({again})", f"stopped unfinished ({again})"))
    if shards["not_started"]:
        parts.append(_shards(shards["not_started"], "has not started", "have not started"))
    return "; ".join(parts)


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
    if summary.get("quantization"):
        print(f"quantization {summary['quantization']} (runtime onnx-{summary['quantization']}, "
              f"recipe {summary['quantization_recipe']})")
    print(f"labels       {', '.join(summary['label_columns']) or '-'}")
    print(f"skipped      {summary['skipped']}")
    for s in summary["skipped_files"]:
        print(f"  {s['path']}: {flag_text(s['reason'])}")  # the flag to raise, not the parameter
    shards = summary.get("shards")
    if shards:
        state = "merged" if shards["merged"] else (
            "not merged: run `artenc store merge STORE`" if shards["complete"]
            else "incomplete: " + _unfinished(shards, store.running_shards()))
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
