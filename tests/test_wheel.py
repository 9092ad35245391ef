"""The wheel ships the Hydra configs, and an install from it finds them without a checkout:
the training config composes through `artenc.training.compose_config` and `artenc train
--cfg job` prints it, with only the installed wheel (and the venv's dependencies) importable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    "artenc/configs/train.yaml",
    "artenc/configs/experiment/wikiart_supcon.yaml",
    "artenc/configs/hydra/default.yaml",
    "artenc/configs/hydra/launcher/slurm.yaml",
    "artenc/configs/backbone/lite0_texture.yaml",
    "artenc/configs/paths/default.yaml",
    "artenc/configs/experiment/simclr.yaml",
    "artenc/configs/scheduler/cosine.yaml",
    "hydra_plugins/artenc_launcher/__init__.py",  # hydra/launcher=slurm's launcher (a Hydra plugin)
]


def _setuptools_can_build() -> str | None:
    """Why the wheel cannot be built here (offline, no build isolation), or None."""
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return "setuptools is not installed in this environment"
    if int(version.split(".")[0]) < 77:  # pyproject's build-system needs >= 77 (license = "MIT")
        return f"setuptools {version} is older than the build-system's setuptools>=77"
    return None


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args[:4]}...: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """artenc's wheel, built from a copy of the sources (the build writes build/ and
    *.egg-info next to pyproject.toml)."""
    reason = _setuptools_can_build()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".scrapy", "output")
    for name in ("src", "scraping"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(tmp / "dist"), str(source)])
    (built,) = (tmp / "dist").glob("artenc-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    """The wheel installed into a bare folder (no dependencies: they come from the venv)."""
    target = wheel.parent / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
          "--target", str(target), str(wheel)])
    return target


def _env_without_checkout(site: Path) -> dict[str, str]:
    """Only the installed wheel on PYTHONPATH; no config-folder override."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ARTENC_CONFIG_DIR")}
    return {**env, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}


def test_wheel_holds_the_hydra_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    in_checkout = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/artenc/configs").rglob("*.yaml")}
    assert in_checkout <= names  # every yaml, nested groups included


def test_installed_wheel_composes_the_training_config(site, tmp_path):
    code = (
        "import json, artenc\n"
        "from artenc.training import compose_config, config_dir\n"
        "cfg = compose_config(['experiment=wikiart_supcon'])\n"
        "print(json.dumps({'artenc': artenc.__file__, 'configs': config_dir(), 'train': str(artenc.train),\n"
        "                  'label_fields': list(cfg.data.label_fields), 'dims': list(cfg.head.dims),\n"
        "                  'labels': cfg.data.labels, 'backbone': cfg.backbone.name}))\n"
    )
    proc = _run([sys.executable, "-c", code], cwd=tmp_path, env=_env_without_checkout(site))
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["artenc"]).is_relative_to(site)  # not the checkout, not an editable install
    assert Path(found["configs"]) == site / "artenc" / "configs"
    assert "function train" in found["train"]
    # the experiment's overrides, and an interpolation of the data config, resolved
    assert found["label_fields"] == ["style"] and found["dims"] == [512, 128]
    assert found["labels"].endswith("wikiart_style/labels.csv")
    assert found["backbone"] == "tf_efficientnet_lite0"


def test_installed_wheel_artenc_train_prints_the_config(site, tmp_path):
    """`artenc train --cfg job ...` (the console script of the wheel) goes to Hydra."""
    script = site / "bin" / "artenc"
    args = [str(script)] if script.is_file() else [sys.executable, "-m", "artenc.cli"]
    proc = _run([*args, "train", "--cfg", "job", "experiment=wikiart_supcon", "loss.temperature=0.2"],
                cwd=tmp_path, env=_env_without_checkout(site))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["head"]["dims"] == [512, 128] and cfg["loss"]["temperature"] == 0.2
    assert not any(tmp_path.iterdir())  # --cfg runs nothing, writes nothing
