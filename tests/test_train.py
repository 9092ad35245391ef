"""Training end to end on a tiny generated image set: CLI fast_dev_run (cache and full
mode), resume from a checkpoint, and the exported encoder reproducing training embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artenc.cli import main as cli_main
from tests.conftest import write_colour_classes


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory) -> Path:
    """3 colour classes x 6 images (48 px) with labels `style`, `split` (one holdout each)."""
    return write_colour_classes(tmp_path_factory.mktemp("tiny_art"), artist=True)


def overrides(root: Path, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "data=images", f"data.root={root}", "data.label_fields=[style]", "data.include={split:[dev]}",
        "data.feature_runtime=torch", "data.cache_views=1", "data.batch_size=8", "data.num_workers=0",
        f"paths.cache_dir={cache}", "callbacks.embedding_map.method=pca", f"hydra.run.dir={run_dir}",
        "logger=csv", *extra,
    ]


def compose(*extra: str):
    from artenc.training import compose_config

    return compose_config(list(extra))


@pytest.mark.parametrize("mode", ["cache", "full"])
def test_fast_dev_run_through_cli(tiny_images, tmp_path, mode):
    run = tmp_path / "run"
    code = cli_main(["train", *overrides(tiny_images, run, tmp_path / "cache", f"data.mode={mode}",
                                         "trainer.fast_dev_run=true")])
    assert code == 0
    # fast_dev_run is a smoke test: nothing exported, no embedding map; the config is saved at the start
    assert not (run / "encoder.pt").exists() and not (run / "embedding_map.png").exists()
    assert (run / "config.yaml").is_file()
    if mode == "cache":  # features on disk as .npy: clean view + 1 augmented
        assert len(list((tmp_path / "cache").glob("*/clean.npy"))) == 1
        assert len(list((tmp_path / "cache").glob("*/aug-*.npy"))) == 1


def test_train_from_python_without_a_hydra_run(tiny_images, tmp_path):
    """`artenc.train(overrides)` takes the CLI's overrides (hydra.run.dir included) with no
    Hydra runtime, and returns typed results."""
    from omegaconf import OmegaConf

    import artenc

    run = tmp_path / "run"
    result = artenc.train([*overrides(tiny_images, run, tmp_path / "cache"), "trainer.fast_dev_run=true"])
    assert result.run_dir == run.resolve() and result.encoder is None  # fast_dev_run exports nothing
    assert OmegaConf.load(run / "config.yaml").paths.output_dir == str(run.resolve())  # what ran
    assert {"val/p_at_k", "val/knn_accuracy"} <= set(result.metrics)
    assert all(isinstance(v, float) and np.isfinite(v) for v in result.metrics.values())
    assert result.best_checkpoint is None  # fast_dev_run writes no checkpoints
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["encoder"] is None and doc["metrics"] == result.metrics


def test_run_folder_choice_and_parameter_errors(tmp_path, monkeypatch):
    """output_dir, else paths.output_dir, else hydra.run.dir (Hydra's default under the
    current folder); a config with neither, or overrides beside a config, is refused."""
    from omegaconf import open_dict

    from artenc.errors import ParameterError
    from artenc.training import _run_dir, train

    monkeypatch.chdir(tmp_path)
    cfg = compose(f"hydra.run.dir={tmp_path / 'a'}")
    assert _run_dir(cfg, tmp_path / "b") == tmp_path / "b"
    assert _run_dir(cfg, None) == tmp_path / "a"
    assert _run_dir(compose(f"paths.output_dir={tmp_path / 'c'}"), None) == tmp_path / "c"
    assert _run_dir(compose(), None).parent == tmp_path / "outputs" / "train"
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(ParameterError, match="^output_dir "):
        train(config=cfg)
    with pytest.raises(ParameterError, match="^overrides "):
        train(["seed=1"], config=cfg)
    assert not (tmp_path / "outputs").exists()


def test_train_subcommand_passes_every_argument_to_hydra(capsys):
    """`artenc train` is an ordinary sub-command: listed by `artenc --help`, and `--help`,
    `--cfg job` and overrides after it reach Hydra in order; other commands still refuse
    arguments they do not declare."""
    with pytest.raises(SystemExit) as exc:
        cli_main(["--help"])
    assert exc.value.code == 0 and "train" in capsys.readouterr().out
    assert cli_main(["train", "--help"]) == 0
    assert "powered by Hydra" in (help_text := capsys.readouterr().out) and "experiment: simclr, wikiart_finetune, wikiart_supcon" in help_text
    assert cli_main(["train", "--cfg", "job", "seed=5", "head=linear"]) == 0
    printed = capsys.readouterr().out
    assert "seed: 5" in printed and "dims:\n  - 128\n" in printed  # head=linear
    with pytest.raises(SystemExit) as exc:
        cli_main(["info", "store", "--cfg", "job"])
    assert exc.value.code == 2 and "unrecognized arguments: --cfg job" in capsys.readouterr().err


def test_train_rejects_holdout_free_config_errors(tiny_images, tmp_path):
    code = cli_main(["train", *overrides(tiny_images, tmp_path / "r", tmp_path / "c", "data.label_fields=[school]",
                                         "trainer.fast_dev_run=true")])
    assert code != 0


CONFIG_ERRORS = [  # (setting, override, what the message says)
    ("data.root", "data.root={tmp}/nowhere", "folder .*/nowhere not found"),
    ("data.labels", "data.labels={tmp}/none.csv", "file .*/none.csv not found"),
    ("data.label_fields", "data.label_fields=[school]",
     r"\['school'\]: no such column \(columns of .*labels.csv: path, style, split, artist\)"),
    ("data.include", "data.include={museum:[x]}", r"\['museum'\]: no such column to filter on"),
    ("data.split.column", "data.split.column=school", "'school': no such column"),
    ("ckpt_path", "ckpt_path={tmp}/gone.ckpt", "file .*/gone.ckpt not found"),
]


@pytest.mark.parametrize(("setting", "override", "message"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_name_the_setting_before_any_heavy_work(tiny_images, tmp_path, setting, override, message):
    """A missing path, labels file, label column or checkpoint: ParameterError naming the
    setting, raised before the run folder, the backbone or Lightning are touched."""
    from artenc.errors import ParameterError
    from artenc.training import train

    override = override.replace("{tmp}", str(tmp_path))
    key = override.split("=", 1)[0] + "="
    args = [o for o in overrides(tiny_images, tmp_path / "run", tmp_path / "cache") if not o.startswith(key)]
    with pytest.raises(ParameterError, match=f"^{setting} {message}") as exc:
        train([*args, override])
    assert exc.value.param == setting
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_unset_data_root_is_refused():
    from artenc.errors import ParameterError
    from artenc.training import validate_config

    with pytest.raises(ParameterError, match="^data.root is not set"):
        validate_config(compose())


def test_cli_config_errors_exit_2_with_one_message(tiny_images, tmp_path, capsys):
    """`artenc train` in a fresh process: a missing label column is one line naming the
    setting, exit 2 (no traceback); Hydra's composition errors exit 2 with Hydra's message."""
    import subprocess
    import sys

    args = [o for o in overrides(tiny_images, tmp_path / "run", tmp_path / "cache") if not o.startswith("data.label")]
    proc = subprocess.run([sys.executable, "-m", "artenc.cli", "train", *args, "data.label_fields=[school]"],
                          capture_output=True, text=True, timeout=300)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 2, printed[-3000:]
    assert "error: data.label_fields ['school']: no such column" in printed and "Traceback" not in printed
    assert [line for line in printed.splitlines() if "school" in line] == [printed.strip().splitlines()[-1]]

    assert cli_main(["train", "head=nonexistent"]) == 2
    assert "Could not find 'head/nonexistent'" in capsys.readouterr().err
    assert cli_main(["train", "no_such_key=1"]) == 2
    assert "Could not override 'no_such_key'" in capsys.readouterr().err


def _ckpt_step(path: Path) -> tuple[int, int]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["global_step"], ckpt["epoch"]


def test_resume_and_export_reproduces_training_embeddings(tiny_images, tmp_path):
    from artenc.training import train

    run = tmp_path / "run"
    base = [o for o in overrides(tiny_images, run, tmp_path / "cache") if not o.startswith("hydra.")]
    base += [f"paths.output_dir={run}", "trainer.max_epochs=1", "callbacks=default"]
    first = train(config=compose(*base))
    assert first.best_checkpoint is not None and first.best_checkpoint.parent == (run / "checkpoints").resolve()
    last = run / "checkpoints" / "last.ckpt"
    step1, epoch1 = _ckpt_step(last)
    assert step1 > 0
    metrics = train(config=compose(*base[:-2], "trainer.max_epochs=2", f"ckpt_path={last}")).metrics
    step2, epoch2 = _ckpt_step(last)
    assert step2 == 2 * step1 and epoch2 > epoch1  # continued, not restarted
    assert {"val/p_at_k", "val/map_at_k", "val/knn_accuracy"} <= set(metrics)

    encoded, trained = _exported_and_training_embeddings(compose(*base), run, tiny_images, "torch")
    np.testing.assert_allclose(encoded, trained, atol=1e-5)


def test_texture_backbone_trains_and_exports_to_onnx(tiny_images, tmp_path):
    """Texture statistics + input dropout: one epoch, then the exported encoder on ONNX Runtime
    gives the training-time embeddings."""
    from artenc.training import train

    run = tmp_path / "run"
    base = [o for o in overrides(tiny_images, run, tmp_path / "cache") if not o.startswith("hydra.")]
    base += [f"paths.output_dir={run}", "trainer.max_epochs=1", "backbone=lite0_texture",
             "head.input_batch_norm=true", "head.input_dropout=0.5", "head.dims=[16,8]"]
    train(config=compose(*base))
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
    from artenc.training import build

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
    proc = subprocess.run([sys.executable, "-m", "artenc.training", *args], cwd=cwd, env=env,
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
    """`-m loss.temperature=0.05,0.2` runs one job per value, each with its own encoder, and
    ends with a table of the runs (`runs.md`)."""
    args = [o for o in overrides(tiny_images, tmp_path / "unused", tmp_path / "cache") if not o.startswith("hydra.")]
    _run_module(["-m", *args, "loss.temperature=0.05,0.2", "trainer.max_epochs=1",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert len(list((tmp_path / "sweep").glob("*/encoder.pt"))) == 2
    table = (tmp_path / "sweep" / "runs.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| 0: loss.temperature=0.05 |")


def test_augmented_views_follow_the_backbone_input_size(tiny_images, tmp_path):
    """lite1 takes 240 px: augmented views are made at 240 unless a conflicting size is asked for."""
    from artenc.errors import UsageError
    from artenc.training import build

    base = [o for o in overrides(tiny_images, tmp_path / "run", tmp_path / "cache") if not o.startswith("hydra.")]
    cfg = compose(*base, "backbone=lite1")
    _, datamodule, _ = build(cfg)
    assert datamodule.augment.size == 240 and cfg.data.augment.size == 240
    view = datamodule.augment(Image.new("RGB", (300, 200)))
    assert view.shape == (3, 240, 240)
    with pytest.raises(UsageError, match=r"data.augment.size=224.*240 px.*needs data.mode=full"):
        build(compose(*base, "backbone=lite1", "data.augment.size=224"))  # cache mode: views must match


def test_full_mode_trains_at_a_lower_resolution(tiny_images, tmp_path):
    """FixRes: in full mode the training views may be smaller than the backbone's input (a CNN
    with global pooling runs at any size); validation and export keep the backbone's 224 px.
    One real epoch at 128 px; a size below 32 px is refused, naming the setting."""
    from artenc.errors import ParameterError
    from artenc.training import build, train

    base = [o for o in overrides(tiny_images, tmp_path / "run", tmp_path / "cache", "data.mode=full")
            if not o.startswith("hydra.")]
    _, datamodule, _ = build(compose(*base, "data.augment.size=128"))
    assert datamodule.augment(Image.new("RGB", (300, 200))).shape == (3, 128, 128)
    with pytest.raises(ParameterError, match="^data.augment.size must be at least 32 px, got 16"):
        build(compose(*base, "data.augment.size=16"))
    result = train([*base, "data.augment.size=128", "trainer.max_epochs=1", "backbone.trainable=1"],
                   output_dir=tmp_path / "run")
    assert result.encoder.is_file() and 0.0 <= result.metrics["val/p_at_k"] <= 1.0
