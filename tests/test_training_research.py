"""Research-grade training on tiny generated images (issue 14): the same run whatever the
feature-cache state, the split saved and reused, self-supervised runs on an unlabelled folder,
SLURM previews and resume, the everyday options, checkpoints without the frozen backbone, the
table that ends a multirun. Real Lightning steps on CPU; W&B offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from artenc.cli import main as cli_main


def _images(root: Path, n_per_class: int, labelled: bool) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        for i in range(n_per_class):
            pixels = (np.array(colour) * 0.7 + rng.integers(0, 80, (40, 40, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"images/c{c}_{i}.png")
            rows.append(f"images/c{c}_{i}.png,s{c}")
    if labelled:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """3 colour classes x 6 images, labels.csv with `label`."""
    return _images(tmp_path_factory.mktemp("labelled"), 6, labelled=True)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    """12 images in sub-folders, no labels file."""
    return _images(tmp_path_factory.mktemp("unlabelled"), 4, labelled=False)


def _args(root: Path, run: Path, cache: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", "data.feature_runtime=torch", "data.cache_views=2", "data.batch_size=4",
            "data.num_workers=0", f"paths.cache_dir={cache}", f"paths.output_dir={run}", "head.dims=[16,8]",
            "callbacks.embedding_map.method=pca", "trainer.enable_progress_bar=false", "threads=1", *extra]


def _trained_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def test_cold_partial_and_warm_cache_give_the_same_run(labelled, tmp_path):
    """Item 1: the feature cache built during the run (cold), partly there (one augmented view
    deleted) or complete (warm): the same metrics and the same trained weights, bit for bit.
    Before the fix, the cache's DataLoaders drew seeds from torch's RNG only when cold."""
    from artenc.training import train

    cache = tmp_path / "cache"
    runs = {}
    for state in ("cold", "warm", "partial"):
        if state == "partial":
            next(iter(sorted(cache.glob("*/aug-*.npy")))).unlink()
        result = train(_args(labelled, tmp_path / state, cache, "data.cache_views=1", "trainer.max_epochs=2",
                             "trainer.limit_train_batches=2"))
        runs[state] = (result.metrics, _trained_weights(tmp_path / state))
    metrics, weights = runs["cold"]
    assert {"val/p_at_k", "val/knn_accuracy", "train/loss_epoch"} <= set(metrics)
    for state in ("warm", "partial"):
        assert runs[state][0] == metrics, state
        assert weights.keys() == runs[state][1].keys()
        assert all(torch.equal(weights[k], runs[state][1][k]) for k in weights), state
    # the validation rows are in each run folder, the same for the three
    splits = [pd.read_csv(tmp_path / s / "split.csv") for s in runs]
    assert list(splits[0].columns) == ["path", "subset"] and set(splits[0]["subset"]) == {"train", "val"}
    assert all(s.equals(splits[0]) for s in splits)
    # metrics.csv: one row per epoch and kind, no extra row for the final validation
    logged = pd.read_csv(tmp_path / "cold" / "csv" / "version_0" / "metrics.csv")
    assert logged["epoch"].max() == 1 and logged["val/p_at_k"].notna().sum() == 2


def test_split_has_its_own_seed_and_is_reused_on_resume(labelled, tmp_path):
    """`data.split.seed` does not follow `seed`; the split file written by a run is read back
    when the run resumes (rows it does not list are left out), and rewritten otherwise."""
    from artenc.data.datamodule import ContrastiveDataModule
    from artenc.data.splits import SplitSpec
    from artenc.training import compose_config

    assert compose_config(["seed=7"]).data.split.seed == 0

    def module(seed: int, reuse: bool) -> ContrastiveDataModule:
        return ContrastiveDataModule(str(labelled), str(labelled / "labels.csv"), ["label"],
                                     SplitSpec(val_fraction=0.34, column="label", seed=seed), augment=None,
                                     split_file=tmp_path / "split.csv", reuse_split=reuse)

    dm = module(0, reuse=False)
    table = dm.read_table()
    train0, val0 = dm.split_rows(table)
    assert len(val0) == 6 and (tmp_path / "split.csv").is_file()
    train1, val1 = module(1, reuse=True).split_rows(table)  # resume: the saved split, not seed 1's
    assert np.array_equal(val1, val0) and np.array_equal(train1, train0)
    assert not np.array_equal(module(1, reuse=False).split_rows(table)[1], val0)  # a new run: seed 1's
    # a row added after the run began is in neither set on resume
    module(0, reuse=False).split_rows(table)
    extra = pd.concat([table, table.iloc[[0]].assign(path=str(labelled / "images" / "new.png"))], ignore_index=True)
    train2, val2 = module(5, reuse=True).split_rows(extra)
    assert len(extra) - 1 not in set(train2) | set(val2) and np.array_equal(val2, val0)


def test_simclr_on_an_unlabelled_folder(unlabelled, tmp_path, caplog):
    """Item 3: `experiment=simclr data.root=DIR` with no labels file trains NT-Xent, logs the
    loss, skips the label metrics with one note, draws the embedding map and exports."""
    import logging

    from artenc.training import train

    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="artenc"):
        result = train(["experiment=simclr", *_args(unlabelled, run, tmp_path / "cache", "trainer.max_epochs=2")])
    assert np.isfinite(result.metrics["train/loss_epoch"])
    assert not any(k.startswith("val/") for k in result.metrics)
    notes = [r.message for r in caplog.records if "no label field" in r.message]
    assert len(notes) == 1 and "skipped" in notes[0]
    assert (run / "embedding_map.png").is_file() and result.encoder is not None and result.encoder.is_file()
    assert result.best_checkpoint is not None  # the lowest training loss
    logged = pd.read_csv(next((run / "csv").glob("*/metrics.csv")))
    assert logged["train/loss_epoch"].notna().sum() == 2
    assert len(pd.read_csv(run / "split.csv")) == 12


def test_labels_null_with_label_fields_is_refused_early(unlabelled):
    from artenc.errors import ParameterError
    from artenc.training import compose_config, validate_config

    with pytest.raises(ParameterError, match=r"^data.label_fields \['label'\] need a labels CSV"):
        validate_config(compose_config([f"data.root={unlabelled}", "data.labels=null"]))
    validate_config(compose_config(["experiment=simclr", f"data.root={unlabelled}"]))  # no error


def test_classifier_loss_and_monitors_are_checked_before_any_heavy_work(unlabelled, labelled, tmp_path, capsys):
    """A classifier loss needs a label field, and every callback's monitor must be a metric the
    run logs (train/loss_epoch only, unlabelled): one ParameterError naming the setting, exit 2
    from the CLI, instead of an IndexError in setup or Lightning's error after epoch 0."""
    from artenc.errors import ParameterError
    from artenc.training import compose_config, validate_config

    simclr = ["experiment=simclr", f"data.root={unlabelled}"]
    with pytest.raises(ParameterError, match=r"^loss CrossEntropyLoss is a classifier: .*data.label_fields") as exc:
        validate_config(compose_config([*simclr, "loss=ce"]))
    assert exc.value.param == "loss"
    assert cli_main(["train", *simclr, "loss=ce", f"hydra.run.dir={tmp_path / 'r'}"]) == 2
    captured = capsys.readouterr()  # Hydra's job logging prints to stdout
    assert "error: loss CrossEntropyLoss is a classifier" in captured.out + captured.err

    stopping = compose_config([*simclr, "callbacks=early_stopping"])  # follows the checkpoint criterion
    assert (stopping.callbacks.early_stopping.monitor, stopping.callbacks.early_stopping.mode) == ("train/loss_epoch",
                                                                                                   "min")
    validate_config(stopping)
    with pytest.raises(ParameterError, match=r"'val/p_at_k' is not logged by this unlabelled .*train/loss_epoch$"):
        validate_config(compose_config([*simclr, "callbacks=early_stopping",
                                        "callbacks.early_stopping.monitor=val/p_at_k"]))
    labelled_run = [f"data.root={labelled}", "callbacks=early_stopping"]
    validate_config(compose_config([*labelled_run, "callbacks.early_stopping.monitor=val/knn_accuracy"]))
    with pytest.raises(ParameterError, match=r"'val/knn_acc' is not logged .*val/knn_accuracy") as exc:
        validate_config(compose_config([*labelled_run, "callbacks.early_stopping.monitor=val/knn_acc"]))
    assert exc.value.param == "callbacks.early_stopping.monitor"
    with pytest.raises(ParameterError, match="val/classifier_accuracy' is not logged"):  # supcon: no classifier
        validate_config(compose_config([*labelled_run, "callbacks.early_stopping.monitor=val/classifier_accuracy"]))
    ce = compose_config([f"data.root={labelled}", "loss=ce"])  # M11: the best checkpoint by classifier accuracy
    assert (ce.callbacks.model_checkpoint.monitor, ce.callbacks.model_checkpoint.mode) == ("val/classifier_accuracy",
                                                                                           "max")
    validate_config(ce)


@pytest.mark.parametrize("experiment", [None, "wikiart_supcon", "wikiart_finetune", "simclr"])
@pytest.mark.parametrize("loss", ["supcon", "ce", "ce_smoothed", "ntxent", "margin"])
def test_packaged_experiments_take_every_loss(labelled, unlabelled, experiment, loss):
    """Every packaged experiment with every loss option: validated and the loss instantiated.
    wikiart_supcon used to set loss.temperature, which CrossEntropyLoss does not take, so the
    README's `experiment=wikiart_supcon loss=ce` died in Hydra's TypeError after loading data."""
    from hydra.utils import instantiate

    from artenc.errors import ParameterError
    from artenc.training import compose_config, validate_config

    data = ([f"data.root={unlabelled}"] if experiment == "simclr" else
            [f"data.root={labelled}", f"data.labels={labelled / 'labels.csv'}", "data.label_fields=[label]",
             "data.include=null", "data.split.column=label"])
    cfg = compose_config([*([f"experiment={experiment}"] if experiment else []), f"loss={loss}", *data])
    if experiment == "simclr" and loss.startswith("ce"):  # a classifier needs labels
        with pytest.raises(ParameterError, match="^loss CrossEntropyLoss is a classifier"):
            validate_config(cfg)
        return
    if experiment == "wikiart_finetune" and loss == "ntxent":  # one view per image there
        with pytest.raises(ParameterError, match="^data.views is 1, and loss NTXentLoss needs exactly 2"):
            validate_config(cfg)
        return
    validate_config(cfg)
    assert type(instantiate(cfg.loss)).__module__ == "artenc.losses"


def test_a_setting_the_target_does_not_take_is_named_before_any_work(labelled):
    """A key of an instantiated node that its `_target_` does not take: one ParameterError naming
    the dotted setting and what the target takes, for the loss, the head, the optimizer and a
    callback; the backbone's fine-tuning keys are settings of the run, not of the factory."""
    from artenc.errors import ParameterError
    from artenc.training import compose_config, validate_config

    base = [f"data.root={labelled}"]
    with pytest.raises(ParameterError, match=r"^loss.temperature is not a setting of loss "
                                             r"\(artenc.losses.CrossEntropyLoss takes: label_smoothing, scale\)") as exc:
        validate_config(compose_config([*base, "loss=ce", "+loss.temperature=0.1"]))
    assert exc.value.param == "loss.temperature"
    for extra, param in [("+head.width=3", "head.width"), ("+model.optimizer.momentum=0.9", "model.optimizer.momentum"),
                         ("+callbacks.lr_monitor.every=2", "callbacks.lr_monitor.every")]:
        with pytest.raises(ParameterError) as exc:
            validate_config(compose_config([*base, extra]))
        assert exc.value.param == param
    with pytest.raises(ParameterError, match=r"^head.width .*ProjectionHead takes: dims, batch_norm") as exc:
        validate_config(compose_config([*base, "+head.width=3"]))
    assert "in_dim" not in str(exc.value)  # passed by the run itself, not a setting
    validate_config(compose_config([*base, "backbone.trainable=1", "backbone.head_epochs=2", "backbone.lr=1e-4"]))


def test_resuming_with_another_loss_is_refused_in_one_line(labelled, tmp_path, capsys):
    """The same run folder re-used with another loss resumes from its last.ckpt: one line naming
    ckpt_path and both losses, exit 2 (was an AttributeError or a state_dict mismatch)."""
    run = tmp_path / "run"
    args = _args(labelled, run, tmp_path / "cache", "trainer.max_epochs=1", f"hydra.run.dir={run}")
    assert cli_main(["train", *args, "loss=margin"]) == 0
    capsys.readouterr()
    assert cli_main(["train", *args, "loss=ce"]) == 2
    out = capsys.readouterr()
    assert "error: ckpt_path " in out.out + out.err
    assert "was trained with loss MarginPairLoss; this run has loss CrossEntropyLoss" in out.out + out.err


def test_views_and_training_size_are_checked_before_any_work(labelled, unlabelled):
    """NT-Xent needs 2 views (a recipe with data.views=1 used to fail in the first step with a
    traceback); data.views and data.augment.size must be whole numbers (176.5 was truncated)."""
    from artenc.errors import ParameterError
    from artenc.training import compose_config, validate_config

    base = [f"data.root={labelled}"]
    with pytest.raises(ParameterError, match=r"^data.views is 1, and loss NTXentLoss needs exactly 2 views per "
                                             r"image: set data.views=2$"):
        validate_config(compose_config([*base, "loss=ntxent", "data.views=1"]))
    validate_config(compose_config(["experiment=simclr", f"data.root={unlabelled}"]))
    for bad, param in [("data.views=0", "data.views"), ("data.augment.size=176.5", "data.augment.size"),
                       ("data.augment.size=[176,200]", "data.augment.size")]:
        with pytest.raises(ParameterError) as exc:
            validate_config(compose_config([*base, bad]))
        assert exc.value.param == param


def test_simclr_early_stopping_and_ce_checkpoints_follow_their_criterion(unlabelled, labelled, tmp_path):
    """simclr with callbacks=early_stopping trains past epoch 0 (it watches train/loss_epoch);
    loss=ce keeps the checkpoint with the best val/classifier_accuracy, and metrics.json says
    which epoch its val/* values come from."""
    from artenc.training import train

    run = tmp_path / "simclr"
    result = train(["experiment=simclr", "callbacks=early_stopping",
                    *_args(unlabelled, run, tmp_path / "cache", "trainer.max_epochs=2")])
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2 and result.best_checkpoint is not None

    run = tmp_path / "ce"
    result = train(["loss=ce", *_args(labelled, run, tmp_path / "cache", "trainer.max_epochs=3")])
    doc = json.loads((run / "metrics.json").read_text())
    best = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    assert doc["epochs"] == 3 and doc["train_epoch"] == 2 and doc["val_epoch"] == best["epoch"]
    (state,) = [v for k, v in best["callbacks"].items() if "val/classifier_accuracy" in k]
    assert state["best_model_score"] == pytest.approx(doc["metrics"]["val/classifier_accuracy"])


def test_checkpoints_hold_trainable_weights_and_a_backbone_reference(labelled, tmp_path):
    """Item 6: a frozen-backbone checkpoint holds the head only (far smaller than the
    backbone) and names the backbone; the best checkpoint loads back for validation and
    resuming from it continues the step count."""
    from artenc.training import train

    run = tmp_path / "run"
    args = _args(labelled, run, tmp_path / "cache", "trainer.max_epochs=1")
    first = train(args)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"] and all(k.startswith("head.") for k in ckpt["state_dict"])
    frozen = ckpt["artenc_frozen"]
    assert frozen["backbone"]["name"] == "tf_efficientnet_lite0" and frozen["values"] > 4_000_000
    backbone_bytes = 4 * frozen["values"]
    assert (run / "checkpoints" / "last.ckpt").stat().st_size < backbone_bytes / 20
    assert first.metrics["val/p_at_k"] >= 0
    steps = ckpt["global_step"]
    train([*args[:-1], "trainer.max_epochs=2"])  # auto-resume from the run folder's last.ckpt
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * steps


def test_trainable_keys_follow_requires_grad():
    """Parameters that require a gradient and the buffers of trainable modules (a partly
    un-frozen backbone keeps its trainable stage's BatchNorm statistics, not the frozen one's)."""
    from artenc.models.checkpointing import (
        trainable_keys,
        trainable_state_dict,
        with_frozen_weights,
    )

    nn = torch.nn

    net = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)),
                        nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False)))
    net[0].requires_grad_(False)
    keys = trainable_keys(net)
    assert keys == {"1.0.weight", "1.0.bias", "1.1.running_mean", "1.1.running_var", "1.1.num_batches_tracked"}
    saved = trainable_state_dict(net, net.state_dict())
    assert set(saved) == keys
    assert set(with_frozen_weights(net, saved)) == set(net.state_dict())


def test_schedule_resumed_with_a_longer_horizon_continues():
    """Raising max_epochs on resume: the rate is the new horizon's at the saved step (no new
    warm-up, not the finished schedule's 0); the constant schedule stays at the base rate."""
    from artenc.models.schedules import warmup_constant, warmup_cosine

    def stepped(total: int, steps: int, state=None, make=warmup_cosine):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt, total_steps=total)
        if state is not None:
            sched.load_state_dict(state)
        for _ in range(steps):
            opt.step()
            sched.step()
        return opt, sched

    opt, sched = stepped(20, 20)
    assert opt.param_groups[0]["lr"] < 1e-2  # the first horizon ended near 0
    longer, _ = stepped(40, 0, sched.state_dict())
    planned, _ = stepped(40, 20)
    assert longer.param_groups[0]["lr"] == pytest.approx(planned.param_groups[0]["lr"]) and planned.param_groups[0][
        "lr"] > 0.4
    assert stepped(20, 20, make=warmup_constant)[0].param_groups[0]["lr"] == 1.0


def test_resume_checkpoint_choice(tmp_path):
    """An explicit ckpt_path wins; else the newest of last.ckpt and Lightning's hpc_ckpt_N."""
    from artenc.training import compose_config, resume_checkpoint

    cfg = compose_config()
    assert resume_checkpoint(cfg, tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    last, hpc = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "hpc_ckpt_1.ckpt"
    last.write_bytes(b"x")
    assert resume_checkpoint(cfg, tmp_path) == str(last)
    hpc.write_bytes(b"x")
    os.utime(last, ns=(time.time_ns() - 10**10,) * 2)
    assert resume_checkpoint(cfg, tmp_path) == str(hpc)
    assert resume_checkpoint(compose_config(["ckpt_path=/x/mine.ckpt"]), tmp_path) == "/x/mine.ckpt"


def test_lightning_requeues_under_slurm(monkeypatch):
    """Under SLURM (its environment variables), the Trainer of our configs uses Lightning's
    SLURMEnvironment with auto-requeue on (SIGUSR1 before the time limit: hpc_ckpt_N.ckpt)."""
    from hydra.utils import instantiate
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from artenc.training import compose_config

    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "77", "SLURM_PROCID": "0",
                       "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node1"}.items():
        monkeypatch.setenv(key, value)
    trainer = instantiate(compose_config(["paths.output_dir=/tmp/unused"]).trainer, logger=False,
                          enable_checkpointing=False)
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue


def test_slurm_launcher_resolves_and_previews_the_batch_script(labelled, tmp_path, capsys):
    """Item 4: `--cfg hydra --resolve` with `-m` and the SLURM launcher resolves every field
    (no InterpolationKeyError 'trainer.devices'); `dry_run=true` prints submitit's sbatch
    script for the sweep and submits nothing."""
    from omegaconf import OmegaConf

    from artenc.training import preview_config

    text = preview_config(["-m", "hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2",
                           "loss.temperature=0.05,0.1", "--cfg", "hydra", "--resolve"])
    jobs = text.split("---\n")
    assert len(jobs) == 2 and jobs[0].startswith("# job 0: ") and "loss.temperature=0.1" in jobs[1]
    launcher = OmegaConf.create(jobs[0]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.artenc_launcher.SlurmLauncher"
    assert launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4 and launcher.nodes == 2
    assert "${" not in OmegaConf.to_yaml(launcher) and launcher.name == "train"

    sweep = tmp_path / "sweep"
    assert cli_main(["train", "-m", "hydra/launcher=slurm", "trainer=ddp", "hydra.launcher.partition=gpu",
                     "hydra.launcher.setup=[module load cuda]", "loss.temperature=0.05,0.1", "dry_run=true",
                     f"hydra.sweep.dir={sweep}", f"data.root={labelled}"]) == 0
    out = capsys.readouterr().out
    script = out[out.index("#!/bin/bash"):]
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120", "#SBATCH --time=240", "module load cuda",
                 "-m submitit.core._submit"):
        assert line in script, line
    assert "# job 1: " in out and not list(sweep.glob("*/encoder.pt"))


def test_slurm_dry_run_validates_each_job_like_a_run(tmp_path, capsys):
    """B3: the SLURM preview refuses (exit 2, one line, no script) what a run would refuse."""
    code = cli_main(["train", "-m", "hydra/launcher=slurm", "trainer=ddp", "loss.temperature=0.05,0.1",
                     "dry_run=true", f"data.root={tmp_path / 'nowhere'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    captured = capsys.readouterr()
    assert code == 2 and "#!/bin/bash" not in captured.out
    assert f"error: data.root folder {tmp_path / 'nowhere'} not found (job 0)" in captured.err


def test_local_sweep_checks_every_job_before_the_first_runs(labelled, tmp_path, capsys):
    """-m on this machine (hydra/launcher=local, the default): a sweep whose second job would be
    refused stops before its first job trains (exit 2, the job named), instead of after it."""
    args = [a for a in _args(labelled, tmp_path / "unused", tmp_path / "cache", "trainer.max_epochs=1")
            if not a.startswith("paths.output_dir")]
    sweep = tmp_path / "sweep"
    code = cli_main(["train", "-m", *args, "loss=supcon,ce", "++loss.temperature=0.1", f"hydra.sweep.dir={sweep}"])
    captured = capsys.readouterr()
    assert code == 2
    assert "error: loss.temperature is not a setting of loss (artenc.losses.CrossEntropyLoss takes: label_smoothing, " \
           "scale); remove it, or pick the option it belongs to (job 1)" in captured.err
    assert not list(sweep.glob("*/encoder.pt")) and not list(sweep.glob("*/checkpoints"))


def test_multirun_cfg_job_prints_each_job(capsys):
    assert cli_main(["train", "-m", "loss.temperature=0.05,0.2", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert out.count("# job ") == 2 and "temperature: 0.05" in out and "temperature: 0.2" in out


def test_sweep_table_reuses_the_compare_renderer(tmp_path):
    """Item 8: a multirun ends with one table row per job, named by its sweep values."""
    from artenc.report.sweep import SweepTable, sweep_table

    for num, temperature in enumerate([0.05, 0.2]):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- data.root=x\n- loss.temperature={temperature}\n")
        (job / "metrics.json").write_text(json.dumps({
            "metrics": {"val/p_at_k": 0.5 + num / 10, "val/map_at_k": 0.4, "val/r_at_k": 0.3,
                        "val/knn_accuracy": 0.6}, "n_validation": 42, "label_fields": ["style"], "k": 5,
            "backbone": "tf_efficientnet_lite0"}))
    (tmp_path / "2").mkdir()  # a job that failed: no metrics.json, no row
    table = sweep_table(tmp_path)
    lines = table.splitlines()
    assert lines[0].startswith("| store | model | field | P@5 |") and len(lines) == 4
    assert lines[2].startswith("| 0: loss.temperature=0.05 | tf_efficientnet_lite0 | style | 0.500 |")
    assert lines[3].startswith("| 1: loss.temperature=0.2 |") and "| 42 |" in lines[3]

    class Config:  # what Hydra passes: config.hydra.sweep.dir
        hydra = type("H", (), {"sweep": type("S", (), {"dir": str(tmp_path)})})

    SweepTable().on_multirun_end(Config)
    assert (tmp_path / "runs.md").read_text().strip() == table


def test_options_in_one_fast_dev_run_process(labelled, tmp_path):
    """Item 6 in a fresh `python -m artenc.training` process: early stopping, gradient
    accumulation, the constant schedule, run name, tags and group to W&B (offline); the
    resolved config is printed and saved at the start; each message is printed once;
    fast_dev_run exports nothing and draws no embedding map."""
    run = tmp_path / "run"
    args = [a for a in _args(labelled, run, tmp_path / "cache") if not a.startswith("paths.output_dir")]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "artenc.training", *args, f"hydra.run.dir={run}", "trainer.fast_dev_run=true",
         "callbacks=early_stopping", "callbacks.early_stopping.monitor=val/knn_accuracy", "scheduler=constant",
         "trainer.accumulate_grad_batches=2", "logger=wandb", "run_name=tiny", "tags=[a,b]", "group=g1"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-3000:]
    assert printed.count("`Trainer.fit` stopped") == 1, printed[-3000:]
    assert "config (resolved):" in printed and printed.index("config (resolved):") < printed.index("Trainer.fit")
    saved = (run / "config.yaml").read_text()
    for text in ("run_name: tiny", "group: g1", "accumulate_grad_batches: 2", "warmup_constant", "EarlyStopping",
                 f"output_dir: {run}"):
        assert text in saved, text
    assert not (run / "encoder.pt").exists() and not (run / "embedding_map.png").exists()
    assert "nothing exported" in printed
    wandb_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1


def test_multirun_groups_its_jobs_for_wandb(labelled, tmp_path, capsys):
    """A multirun's jobs share a W&B group, the sweep folder's name (unless `group=` is set);
    `dry_run=true` prints each job's resolved config and trains nothing."""
    sweep = tmp_path / "sweep_abc"
    assert cli_main(["train", "-m", f"data.root={labelled}", "logger=wandb", "loss.temperature=0.05,0.1",
                     "dry_run=true", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}"]) == 0
    out = capsys.readouterr().out
    assert out.count("group: sweep_abc") == 4  # top-level and logger.wandb.group, in each of 2 jobs
    assert not (tmp_path / "cache").exists() and not list(sweep.glob("*/config.yaml"))
