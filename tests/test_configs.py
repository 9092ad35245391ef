"""Every Hydra config composes and instantiates; the SLURM launcher config resolves."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from artenc.training import build, config_dir

CONFIGS = Path(config_dir())
GROUPS = ["data", "backbone", "head", "loss", "model", "scheduler", "trainer", "logger", "callbacks", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


def _compose(tmp_path: Path, *overrides: str, hydra_cfg: bool = False):
    base = [f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides], return_hydra_config=hydra_cfg)


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)
    assert {"cpu", "gpu", "ddp"} <= {n for g, n in OPTIONS if g == "trainer"}
    assert {"wandb", "csv", "tensorboard", "none"} <= {n for g, n in OPTIONS if g == "logger"}


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_config_composes_and_instantiates(group, name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    override = f"{group}={name}"
    has_root = group == "data" and name != "images" or group == "experiment" and name != "simclr"
    extra = [] if has_root else ["data.root=" + str(tmp_path)]
    if group == "trainer":  # no GPU here: instantiate the same config on the CPU
        extra += ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]
    cfg = _compose(tmp_path, override, *extra)
    if group in ("data", "backbone", "head", "loss", "model", "scheduler", "experiment"):
        backbone, datamodule, model = build(cfg)
        assert model.head.dims[0] == backbone.dim
        assert datamodule.label_fields or datamodule.labels_csv is None  # labelled, or an unlabelled folder
    elif group == "trainer":
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.max_epochs >= 1
    else:  # logger / callbacks: {name: config} dicts
        for node in (cfg.get(group) or {}).values():
            assert instantiate(node) is not None


def test_slurm_launcher_config(tmp_path):
    cfg = _compose(tmp_path, "hydra/launcher=slurm", "trainer=ddp", hydra_cfg=True)
    launcher = cfg.hydra.launcher
    module, _, cls = launcher._target_.rpartition(".")
    assert getattr(importlib.import_module(module), cls).__name__ == "SlurmLauncher"
    assert launcher.tasks_per_node == cfg.trainer.devices and launcher.nodes == cfg.trainer.num_nodes


def test_wikiart_experiment_never_includes_holdout(tmp_path):
    cfg = _compose(tmp_path, "experiment=wikiart_supcon")
    assert list(cfg.data.include.split) == ["dev"] and list(cfg.data.label_fields) == ["style"]
    assert cfg.data.mode == "cache"


def test_config_dir_env_replaces_and_search_path_extends(tmp_path, monkeypatch, capsys):
    """$ARTENC_CONFIG_DIR replaces the packaged configs; `hydra.searchpath` (Python) and
    `--config-dir` (CLI) add a folder whose options join the packaged groups."""
    from artenc.cli import main as cli_main
    from artenc.training import compose_config

    mine = tmp_path / "mine"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "tiny.yaml").write_text("# @package _global_\nseed: 7\nhead:\n  dims: [8]\n")
    cfg = compose_config([f"hydra.searchpath=[file://{mine}]", "experiment=tiny"])
    assert cfg.seed == 7 and list(cfg.head.dims) == [8] and cfg.loss.temperature == 0.1
    assert cli_main(["train", "--config-dir", str(mine), "experiment=tiny", "--cfg", "job"]) == 0
    printed = capsys.readouterr().out
    assert "seed: 7" in printed and "dims:\n  - 8" in printed

    copy = tmp_path / "copy"
    shutil.copytree(CONFIGS, copy)
    (copy / "train.yaml").write_text((copy / "train.yaml").read_text().replace("seed: 0", "seed: 3"))
    monkeypatch.setenv("ARTENC_CONFIG_DIR", str(copy))
    assert config_dir() == str(copy) and compose_config().seed == 3
    monkeypatch.setenv("ARTENC_CONFIG_DIR", str(mine))
    with pytest.raises(FileNotFoundError, match="ARTENC_CONFIG_DIR"):
        config_dir()
