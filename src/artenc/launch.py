"""Sharded embedding as a job array, through submitit (https://github.com/facebookincubator/submitit).

`embed_array(roots, store, shards=N)` submits N jobs, job I running
`artenc.embed(roots, store, shard=(I, N))` (`artenc.shards`), all writing one store at once
(the store is safe with several writers, `artenc.store`), waits for them and joins the parts
(`Store.merge`). The executor is submitit's: `cluster=None` picks SLURM where `sbatch` exists
and local processes elsewhere, "local" runs the jobs as local processes, "debug" in this
process one after another (tests); or pass a configured `submitit.Executor`. A job that
fails or is killed is simply submitted again (same I/N): it finishes its share. (submitit's
local executor hands every job the same GPUs: for one process per GPU of one node, start
`artenc embed --shard K/N --device cuda:K` yourself, README "At scale".)

submitit is the launcher of artenc's training too (hydra-submitit-launcher, `artenc[train]`);
`pip install 'artenc[cluster]'` installs it alone; it is imported when a job array is launched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from artenc.embedding import embed_folders
from artenc.errors import ParameterError, require
from artenc.store import Store

log = logging.getLogger(__name__)


@dataclass
class ArrayReport:
    """What `embed_array` did: `job_ids` (the scheduler's), `reports` (each shard's
    `EmbedReport.to_dict()`, by shard index; empty when not waited for) and `merge`
    (`MergeReport.to_dict()`, None when not merged)."""

    store: str
    shards: int
    job_ids: list[str] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    merge: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _embed_shard(roots: list[str], out: str, index: int, count: int, options: dict) -> dict:
    """One job of the array (module level, so that submitit can pickle it)."""
    return embed_folders(roots, out, shard=(index, count), progress=False, **options).to_dict()


def embed_array(
    roots: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    shards: int,
    executor: Any | None = None,
    folder: str | os.PathLike | None = None,
    cluster: str | None = None,
    slurm: dict | None = None,
    wait: bool = True,
    merge: bool = True,
    **options: Any,
) -> ArrayReport:
    """Embed `roots` into the store `out` with `shards` jobs of a job array (submitit).

    Args:
        roots, out, options: as `artenc.embed` (model, batch_size, workers, device, ...), for
            every job; device "auto" uses the job's GPU when the scheduler gives it one.
        shards: N jobs (>= 1); job I embeds the files `artenc.shards` assigns to I of N.
        executor: a configured `submitit.Executor` (overrides folder, cluster and slurm).
        folder: where submitit keeps its job scripts and logs (default: STORE/../<store>-jobs).
        cluster: None (SLURM when available, else local processes), "slurm", "local", "debug".
        slurm: submitit parameters of each job (`AutoExecutor.update_parameters`), e.g.
            ``{"slurm_partition": "gpu", "gpus_per_node": 1, "cpus_per_task": 8,
            "timeout_min": 240, "mem_gb": 32}``; the array runs all N at once unless
            ``slurm_array_parallelism`` says otherwise.
        wait: wait for every job (then `reports` holds their reports); merge: then join
            the parts (`Store.merge`), when every job succeeded.

    Returns:
        `ArrayReport`. Raises ParameterError("shards") for N < 1, OptionalDependencyError
        without submitit, and the first job's exception (submitit's `FailedJobError`) when
        a job failed: submit the failed shard again (same I/N) and merge.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ParameterError("shards", f"must be a number of jobs >= 1, got {shards!r}")
    if executor is None:
        submitit = require("submitit", "cluster")
        store_path = Path(out).absolute()
        executor = submitit.AutoExecutor(folder=folder or store_path.parent / f"{store_path.name}-jobs",
                                         cluster=cluster)
        executor.update_parameters(**{"name": "artenc-embed", "slurm_array_parallelism": shards, **(slurm or {})})
    roots_text = [str(Path(r).absolute()) for r in roots]
    out_text = str(Path(out).absolute())
    jobs = executor.map_array(_embed_shard, [roots_text] * shards, [out_text] * shards, list(range(shards)),
                              [shards] * shards, [options] * shards)
    report = ArrayReport(out_text, shards, [str(j.job_id) for j in jobs])
    log.info("submitted %d embed jobs: %s", shards, ", ".join(report.job_ids))
    if not wait:
        return report
    report.reports = [job.result() for job in jobs]
    if merge:
        report.merge = Store.open(out_text).merge().to_dict()
    return report
