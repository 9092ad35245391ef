"""The table that ends a multirun (`artenc train -m ...`): one row per job and label field,
rendered by `report.tables.evaluation_table` (the table `artenc compare` prints).

Each job of `artenc.training.train` leaves `metrics.json` in its run folder (final metrics,
validation size, label fields, k, backbone) and Hydra leaves `.hydra/overrides.yaml`; the
Hydra callback `SweepTable` (configs/hydra/default.yaml) reads them at the end of the sweep.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from artenc.report.tables import evaluation_table

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
COLUMNS = ("p_at_k", "map_at_k", "r_at_k", "knn_accuracy", "linear_probe_accuracy")


def _overrides(job_dir: Path) -> list[str]:
    """The job's overrides (Hydra's `.hydra/overrides.yaml`), e.g. ["loss.temperature=0.05"]."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [line[2:].strip() for line in path.read_text().splitlines() if line.startswith("- ")]


def job_report(job_dir: Path) -> dict[str, Any] | None:
    """A job's `metrics.json` as an evaluation report (`evaluate.EvaluationReport.to_dict()`'s
    shape: store, model, fields -> metrics), or None when the job left none (it failed)."""
    path = job_dir / METRICS_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    metrics, fields = doc.get("metrics", {}), doc.get("label_fields") or ["-"]
    report_fields = {}
    for field in fields:
        prefix = "val/" if len(fields) == 1 else f"val/{field}/"
        values = {c: metrics.get(prefix + c) for c in COLUMNS}
        report_fields[field] = {**values, "n_queries": doc.get("n_validation")}
    return {"store": job_dir.name, "overrides": _overrides(job_dir), "model": doc.get("backbone"), "fields": report_fields,
            "k": doc.get("k", 10)}


def sweep_table(sweep_dir: str | os.PathLike) -> str | None:
    """The Markdown table of the jobs under `sweep_dir` (sub-folders with `metrics.json`, in
    job-number order), or None when no job finished. Validation metrics of each job's best
    checkpoint; `-` where a job has no such metric (e.g. no labels)."""
    folders = [p for p in Path(sweep_dir).iterdir() if p.is_dir()]
    folders.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    reports = [r for r in (job_report(p) for p in folders) if r is not None]
    if not reports:
        return None
    shared = set.intersection(*(set(r["overrides"]) for r in reports))
    for r in reports:  # a job is named by what differs: its sweep values
        r["store"] = f"{r['store']}: {' '.join(o for o in r['overrides'] if o not in shared)}".rstrip(": ")
    return evaluation_table(reports, int(reports[0]["k"]))


class SweepTable:
    """Hydra callback: at the end of a multirun, print `sweep_table` of its folder (each job
    named by its sweep values) and save it as `<sweep dir>/runs.md`. Hydra's `Callback`
    interface, duck-typed (Hydra is optional): the other events do nothing."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        """Nothing (a single run has no table)."""

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        """Nothing."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """Nothing."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        """Nothing."""

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        """Nothing (the table is made once the sweep ends)."""

    def on_compose_config(self, config: Any, config_name: str | None, overrides: list[str]) -> None:
        """Nothing."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:  # noqa: ARG002 - Hydra's signature
        sweep_dir = Path(str(config.hydra.sweep.dir))
        table = sweep_table(sweep_dir) if sweep_dir.is_dir() else None
        if table is None:
            return
        (sweep_dir / "runs.md").write_text(table + "\n")
        print(f"\nruns of {sweep_dir} (validation of each job's best checkpoint):\n{table}")
