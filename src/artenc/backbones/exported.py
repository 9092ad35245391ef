"""Encoders exported by `artenc train`: frozen backbone + projection head + preprocessing.

File format (`encoder.pt`): a torch file holding only tensors and strings,
`{"config": <JSON text>, "state_dict": {name: tensor}}`, read back with
`torch.load(weights_only=True)` — no arbitrary pickled objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from artenc.atomic import atomic_path
from artenc.backbones._registry import Backbone
from artenc.errors import UsageError
from artenc.models.heads import ProjectionHead
from artenc.preprocess import PreprocessConfig

FORMAT = "artenc-encoder/1"


class HeadedEncoder(nn.Module):
    """Backbone pooled features followed by a projection head (timm-style interface)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def save_encoder(
    path: str | Path,
    *,
    backbone_name: str,
    backbone: nn.Module,
    head: ProjectionHead,
    preprocess: PreprocessConfig,
    extra: dict | None = None,
    features: dict | None = None,
) -> Path:
    """Write an exported encoder; returns its path.

    `features`: the config of a feature wrapper around the timm `backbone_name` model
    (`artenc.models.pooling.FeatureWrapper.config()`), None for its plain pooled output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "backbone": backbone_name,
        "head": head.config(),
        "preprocess": preprocess.to_dict(),
        "features": features,
        "extra": extra or {},
    }
    encoder = HeadedEncoder(backbone, head)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": json.dumps(config), "state_dict": state}, tmp)
    return path


def load_exported_encoder(path: str | Path) -> Backbone:
    """Rebuild an exported encoder as a Backbone (its `dim` is the head's output size)."""
    import timm

    from artenc.backbones._registry import create_backbone

    path = Path(path)
    if path.is_dir():
        path = path / "encoder.pt"
    if not path.is_file():
        raise UsageError(f"{path}: encoder file not found (expected the encoder.pt written by `artenc train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        config = json.loads(blob["config"])
        state = blob["state_dict"]
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: not an artenc encoder file ({type(exc).__name__}: {exc})") from exc
    if config.get("format") != FORMAT:
        raise UsageError(f"{path}: unsupported encoder format {config.get('format')!r} (expected {FORMAT})")
    name = config["backbone"]
    if timm.is_model(name):
        net = timm.create_model(name, pretrained=False)
    else:  # registered non-timm architectures (torchvision): build with their own weights, then overwrite
        net = create_backbone(name).model
    if config.get("features"):
        from artenc.models.pooling import wrap_features

        net = wrap_features(net, config["features"])
    head = ProjectionHead(**config["head"])
    encoder = HeadedEncoder(net, head)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UsageError(f"{path}: weights do not match its config: {str(exc)[:400]}") from exc
    encoder.eval()
    return Backbone(
        name=str(path.resolve()),
        model=encoder,
        preprocess=PreprocessConfig.from_dict(config["preprocess"]),
        dim=head.out_dim,
        weights_source=str(path),
    )
