"""`artenc train [overrides]` / `python -m artenc.train [overrides]`: Hydra entry point.

`train(cfg)` builds everything from the config, fits, validates the best checkpoint,
exports the encoder and returns the metrics; `main` only calls it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from artenc.errors import UsageError

log = logging.getLogger(__name__)


def config_dir() -> str:
    """The Hydra configs: $ARTENC_CONFIG_DIR, else the repository's `configs/` next to `src/`."""
    env = os.environ.get("ARTENC_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    for base in Path(__file__).resolve().parents:
        if (base / "configs" / "train.yaml").is_file():
            return str(base / "configs")
    raise FileNotFoundError(
        "artenc's Hydra configs were not found: set ARTENC_CONFIG_DIR to the repository's configs/ folder"
    )


def _instantiate_dict(node: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a {name: config} group (callbacks, loggers)."""
    if not node:
        return []
    return [hydra.utils.instantiate(c) for c in node.values() if isinstance(c, DictConfig) and "_target_" in c]


def _augment_at_backbone_size(cfg: DictConfig, size: int) -> None:
    """Augmented views are made at the backbone's input size: `data.augment.size: null`
    takes it; another size is refused (its features would not match the clean view's)."""
    augment = cfg.data.get("augment")
    if augment is None or "size" not in augment:
        return
    if augment.size is None:
        with open_dict(cfg):
            augment.size = size
    elif int(augment.size) != size:
        raise UsageError(f"data.augment.size={augment.size}, but the backbone {cfg.backbone.name} takes {size} px "
                         "inputs: leave data.augment.size=null to follow the backbone")


def build(cfg: DictConfig):
    """(backbone, datamodule, LightningModule) from a composed config."""
    from artenc.runtime import EmbeddingModule

    backbone = hydra.utils.instantiate(cfg.backbone)
    _augment_at_backbone_size(cfg, backbone.preprocess.size)
    # a dataclass passed to instantiate would be turned into a config node: bind it afterwards
    datamodule = hydra.utils.instantiate(cfg.data, _partial_=True)(backbone=backbone)
    # backbone features are unit vectors (EmbeddingModule); the head normalises too, so the
    # exported encoder (raw pooled features -> head) computes exactly what was trained
    head = hydra.utils.instantiate(cfg.head, in_dim=backbone.dim, normalize_input=True)
    model = hydra.utils.instantiate(
        cfg.model, backbone=EmbeddingModule(backbone.model, backbone.preprocess), head=head,
        loss=hydra.utils.instantiate(cfg.loss),
    )
    return backbone, datamodule, model


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the head, validate the best checkpoint, export `encoder.pt`; returns the metrics."""
    import lightning as L
    import torch

    from artenc.backbones import save_encoder
    from artenc.layers import FeatureWrapper

    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    backbone, datamodule, model = build(cfg)
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_instantiate_dict(cfg.get("callbacks")), logger=loggers or False
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}

    if cfg.get("export", True) and trainer.is_global_zero:
        out = Path(cfg.paths.output_dir) / "encoder.pt"
        features = backbone.model.config() if isinstance(backbone.model, FeatureWrapper) else None
        save_encoder(
            out, backbone_name=cfg.backbone.name, backbone=backbone.model, head=model.head.cpu(),
            preprocess=backbone.preprocess, features=features,
            extra={"label_fields": list(cfg.data.label_fields), "classes": datamodule.classes,
                   "checkpoint": best or None, "val_metrics": metrics},
        )
        log.info("exported encoder: %s (use: artenc embed IMAGES --model %s --out STORE)", out, out)
    log.info("validation: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("val/")))
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: run `train` and return the metric sweepers optimise."""
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
