"""Every Hydra config composes and instantiates; the SLURM launcher config resolves."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from artenc.train import build, config_dir

CONFIGS = Path(config_dir())
GROUPS = ["data", "backbone", "head", "loss", "model", "trainer", "logger", "callbacks", "experiment"]
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
    extra = [] if group == "data" and name != "images" or group == "experiment" else ["data.root=" + str(tmp_path)]
    if group == "trainer":  # no GPU here: instantiate the same config on the CPU
        extra += ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true"]
    cfg = _compose(tmp_path, override, *extra)
    if group in ("data", "backbone", "head", "loss", "model", "experiment"):
        backbone, datamodule, model = build(cfg)
        assert model.head.dims[0] == backbone.dim and datamodule.label_fields
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
