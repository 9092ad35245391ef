"""Training end to end on a tiny generated image set: CLI fast_dev_run (cache and full
mode), resume from a checkpoint, and the exported encoder reproducing training embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artenc.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory) -> Path:
    """3 colour classes x 6 images (48 px) with labels `style`, `split` (one holdout each)."""
    root = tmp_path_factory.mktemp("tiny_art")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = ["path,style,split,artist"]
    for c, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        for i in range(6):
            pixels = (np.array(colour) * 0.7 + rng.integers(0, 80, (48, 48, 3))).clip(0, 255).astype(np.uint8)
            path = f"images/c{c}_{i}.jpg"
            Image.fromarray(pixels).save(root / path)
            rows.append(f"{path},s{c},{'holdout' if i == 5 else 'dev'},a{i % 3}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def overrides(root: Path, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "data=images", f"data.root={root}", "data.label_fields=[style]", "data.include={split:[dev]}",
        "data.feature_runtime=torch", "data.cache_views=1", "data.batch_size=8", "data.num_workers=0",
        f"paths.cache_dir={cache}", "callbacks.embedding_map.method=pca", f"hydra.run.dir={run_dir}",
        "logger=csv", *extra,
    ]


def compose(*extra: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from artenc.train import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return hydra_compose("train", overrides=list(extra))


@pytest.mark.parametrize("mode", ["cache", "full"])
def test_fast_dev_run_through_cli(tiny_images, tmp_path, mode):
    run = tmp_path / "run"
    code = cli_main(["train", *overrides(tiny_images, run, tmp_path / "cache", f"data.mode={mode}",
                                         "trainer.fast_dev_run=true")])
    assert code == 0
    assert (run / "encoder.pt").is_file() and (run / "embedding_map.png").is_file()
    if mode == "cache":  # features on disk as .npy: clean view + 1 augmented
        assert len(list((tmp_path / "cache").glob("*/clean.npy"))) == 1
        assert len(list((tmp_path / "cache").glob("*/aug-*.npy"))) == 1


def test_train_rejects_holdout_free_config_errors(tiny_images, tmp_path):
    code = cli_main(["train", *overrides(tiny_images, tmp_path / "r", tmp_path / "c", "data.label_fields=[school]",
                                         "trainer.fast_dev_run=true")])
    assert code != 0


def _ckpt_step(path: Path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["epoch"]


def test_resume_and_export_reproduces_training_embeddings(tiny_images, tmp_path):
    from artenc.train import train

    run = tmp_path / "run"
    base = [o for o in overrides(tiny_images, run, tmp_path / "cache") if not o.startswith("hydra.")]
    base += [f"paths.output_dir={run}", "trainer.max_epochs=1", "callbacks=default"]
    train(compose(*base))
    last = run / "checkpoints" / "last.ckpt"
    step1, epoch1 = _ckpt_step(last)
    assert step1 > 0
    metrics = train(compose(*base[:-2], "trainer.max_epochs=2", f"ckpt_path={last}"))
    step2, epoch2 = _ckpt_step(last)
    assert step2 == 2 * step1 and epoch2 > epoch1  # continued, not restarted
    assert {"val/p_at_k", "val/map_at_k", "val/knn_accuracy"} <= set(metrics)

    encoded, trained = _exported_and_training_embeddings(compose(*base), run, tiny_images, "torch")
    np.testing.assert_allclose(encoded, trained, atol=1e-5)


def test_texture_backbone_trains_and_exports_to_onnx(tiny_images, tmp_path):
    """Texture statistics + input dropout: one epoch, then the exported encoder on ONNX Runtime
    gives the training-time embeddings."""
    from artenc.train import train

    run = tmp_path / "run"
    base = [o for o in overrides(tiny_images, run, tmp_path / "cache") if not o.startswith("hydra.")]
    base += [f"paths.output_dir={run}", "trainer.max_epochs=1", "backbone=lite0_texture",
             "head.input_batch_norm=true", "head.input_dropout=0.5", "head.dims=[16,8]"]
    train(compose(*base))
    encoded, trained = _exported_and_training_embeddings(compose(*base), run, tiny_images, "onnx")
    assert encoded.shape == (18, 8)
    np.testing.assert_allclose(encoded, trained, atol=1e-4)


def _exported_and_training_embeddings(cfg, run: Path, root: Path, runtime: str) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the images under root by the exported `run/encoder.pt` (on `runtime`) and
    by the LightningModule with the weights of the checkpoint it was exported from."""
    from artenc.backbones import load_exported_encoder
    from artenc.images import load_image
    from artenc.preprocess import to_uint8_chw
    from artenc.runtime import create_encoder
    from artenc.train import build

    _, _, module = build(cfg)
    exported = load_exported_encoder(run / "encoder.pt")
    source_ckpt = _exported_checkpoint(run / "encoder.pt")
    module.load_state_dict(torch.load(source_ckpt, map_location="cpu", weights_only=False)["state_dict"])
    module.eval()
    paths = sorted((root / "images").glob("*.jpg"))
    images = np.stack([to_uint8_chw(load_image(p), exported.preprocess) for p in paths])
    with torch.no_grad():
        trained = module(torch.from_numpy(images)[:, None])[:, 0].numpy()
    encoded = create_encoder(str(run / "encoder.pt"), runtime=runtime, device="cpu").encode(images)
    return encoded, trained


def _exported_checkpoint(encoder_pt: Path) -> str:
    import json

    blob = torch.load(encoder_pt, map_location="cpu", weights_only=True)
    return json.loads(blob["config"])["extra"]["checkpoint"]


def _run_module(args: list[str], cwd: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "artenc.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tiny_images, tmp_path):
    """Lightning's DDP strategy with 2 CPU processes (gloo) and gathered negatives."""
    run = tmp_path / "run"
    _run_module([*overrides(tiny_images, run, tmp_path / "cache"), "trainer=ddp", "trainer.accelerator=cpu",
                 "trainer.devices=2", "trainer.precision=32-true", "trainer.sync_batchnorm=false",
                 "loss.gather=true", "data.batch_size=4", "trainer.max_epochs=2"], tmp_path)
    assert (run / "encoder.pt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_multirun_sweep(tiny_images, tmp_path):
    """`-m loss.temperature=0.05,0.2` runs one job per value, each with its own encoder."""
    args = [o for o in overrides(tiny_images, tmp_path / "unused", tmp_path / "cache") if not o.startswith("hydra.")]
    _run_module(["-m", *args, "loss.temperature=0.05,0.2", "trainer.fast_dev_run=true",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert len(list((tmp_path / "sweep").glob("*/encoder.pt"))) == 2


def test_augmented_views_follow_the_backbone_input_size(tiny_images, tmp_path):
    """lite1 takes 240 px: augmented views are made at 240 unless a conflicting size is asked for."""
    from artenc.errors import UsageError
    from artenc.train import build

    base = [o for o in overrides(tiny_images, tmp_path / "run", tmp_path / "cache") if not o.startswith("hydra.")]
    cfg = compose(*base, "backbone=lite1")
    _, datamodule, _ = build(cfg)
    assert datamodule.augment.size == 240 and cfg.data.augment.size == 240
    view = datamodule.augment(Image.new("RGB", (300, 200)))
    assert view.shape == (3, 240, 240)
    with pytest.raises(UsageError, match="data.augment.size=224.*240 px"):
        build(compose(*base, "backbone=lite1", "data.augment.size=224"))
