"""Embed a collection with N jobs of a SLURM job array (submitit), then merge the store.

    python scripts/embed_slurm.py /data/art --out /data/art.store --shards 16 \
        --partition gpu --gpus-per-task 1 --cpus-per-task 8 --time-min 240 --mem-gb 32

Job I of N runs `artenc.embed(IMAGES, STORE, shard=(I, N))` on one GPU (`artenc.launch.embed_array`);
this script waits for the array, then joins the parts (`artenc store merge`). Without SLURM
(`--cluster local`) the N jobs are local processes; `--no-wait` submits and returns (merge later
with `artenc store merge STORE`). A failed or killed job: run `artenc embed IMAGES --out STORE
--shard I/N` for it (or this script again: finished shards find their files unchanged), then merge.
Job scripts and logs go to STORE-jobs/ beside the store (`--logs`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from artenc.launch import embed_array


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGES_DIR")
    p.add_argument("--out", required=True, metavar="STORE")
    p.add_argument("--shards", type=int, required=True, metavar="N", help="jobs in the array")
    p.add_argument("--cluster", choices=["slurm", "local", "debug"], default=None,
                   help="default: SLURM when sbatch exists, else local processes")
    p.add_argument("--logs", metavar="DIR", help="submitit's job folder (default: STORE-jobs beside the store)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--gpus-per-task", type=int, default=1)
    p.add_argument("--cpus-per-task", type=int, default=8, help="decoding workers are cpus-per-task - 2")
    p.add_argument("--time-min", type=int, default=240, help="time limit of each job, minutes")
    p.add_argument("--mem-gb", type=int, default=32)
    p.add_argument("--parallel", type=int, default=None, help="jobs running at once (default: all)")
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--no-wait", action="store_true", help="submit and return")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    slurm = {"gpus_per_node": args.gpus_per_task, "cpus_per_task": args.cpus_per_task,
             "timeout_min": args.time_min, "mem_gb": args.mem_gb, "tasks_per_node": 1,
             "slurm_array_parallelism": args.parallel or args.shards}
    if args.partition:
        slurm["slurm_partition"] = args.partition
    report = embed_array(args.images, args.out, shards=args.shards, cluster=args.cluster, folder=args.logs,
                         slurm=slurm, wait=not args.no_wait, model=args.model, batch_size=args.batch_size,
                         workers=max(1, args.cpus_per_task - 2))
    json.dump(report.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
