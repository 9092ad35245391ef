"""artenc's launchers for Hydra: local jobs checked before the first runs, and SLURM with a preview.

`hydra/launcher=local` (the default of `artenc train -m`, artenc/configs/hydra/launcher/local.yaml)
targets `CheckedBasicLauncher`: Hydra's basic launcher (jobs one after another on this machine)
that first checks every job's config as a run would (`artenc.training.validate_jobs`), so a bad
job of a sweep stops it before any job trains instead of after the jobs before it.

A Hydra plugin (Hydra loads launchers only from the `hydra_plugins` namespace package, so it
lives here rather than in `artenc`). `hydra/launcher=slurm` (artenc/configs/hydra/launcher/slurm.yaml) targets `SlurmLauncher`: the
launcher of hydra-submitit-launcher (submitit's executor, one array job per sweep) that, when
the run config has `dry_run=true`, checks each job's config as a run would
(`artenc.training.validate_jobs`: one error, exit 2), then prints the sbatch script submitit
would submit, rendered by submitit's own `_make_sbatch_string` with the launcher's parameters,
and submits nothing.


Requeue: submitit sends the job a signal `signal_delay_s` before its time limit, resubmits it
(up to `max_num_timeout` times) with the same overrides, so the job re-runs in the same run
folder, where `artenc.training.resume_checkpoint` finds `checkpoints/last.ckpt`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from unittest import mock

import submitit
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

from artenc.training import validate_jobs

log = logging.getLogger(__name__)


def _validate_sweep(launcher: Any, job_overrides: Sequence[Sequence[str]]) -> None:
    """`validate_jobs` on the composed config of each job of a launch (ParameterError, exit 2)."""
    loader = launcher.hydra_context.config_loader
    validate_jobs([loader.load_sweep_config(launcher.config, list(overrides)) for overrides in job_overrides])


class CheckedBasicLauncher(BasicLauncher):
    """Hydra's basic launcher; every job's config is checked (`validate_jobs`) before the first job
    of a launch runs."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if len(job_overrides) > 1:  # a single job is checked by the run itself
            _validate_sweep(self, job_overrides)
        return super().launch(job_overrides, initial_job_idx)


def render_batch_script(executor: submitit.AutoExecutor, n_jobs: int) -> str:
    """The sbatch script `executor` (a SLURM AutoExecutor with its parameters set) would
    submit for an array of `n_jobs` jobs (one job: no array line); submitit's own rendering."""
    inner = executor._executor  # the SlurmExecutor: its parameters are sbatch's
    parameters = dict(inner.parameters)
    if n_jobs > 1:
        parameters["map_count"] = n_jobs
    return _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder, **parameters)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher; `dry_run=true` in the run config prints the
    batch script (`render_batch_script`) and each job's overrides instead of submitting."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not (self.config is not None and self.config.get("dry_run")):
            return super().launch(job_overrides, initial_job_idx)
        _validate_sweep(self, job_overrides)  # the checks of a run, on each job's config, before the script (B3)

        def preview(executor: submitit.AutoExecutor, fn: Any, *iterables: Sequence) -> list:  # noqa: ARG001
            n = len(iterables[0]) if iterables else 1
            print(f"# dry_run: the batch script of {n} job(s), not submitted\n{render_batch_script(executor, n)}")
            for i, overrides in enumerate(iterables[0] if iterables else []):
                print(f"# job {initial_job_idx + i}: {' '.join(overrides)}")
            return []

        # no cluster here: submitit's check for `srun` is skipped, and map_array only renders
        with mock.patch.object(SlurmExecutor, "affinity", return_value=1), \
                mock.patch.object(submitit.AutoExecutor, "map_array", preview):
            return super().launch(job_overrides, initial_job_idx)
