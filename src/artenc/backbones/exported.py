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
from artenc.errors import UsageError
from artenc.layers.heads import ProjectionHead
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
    (`artenc.layers.FeatureWrapper.config()`), None for its plain pooled output.
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


def read_encoder(path: str | Path) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    """Read an exported encoder file: (its path, the config, the state_dict of `HeadedEncoder`).

    `path` is the `encoder.pt` file or its folder. Raises UsageError when the file is missing,
    is not an artenc encoder, or has another format version. `artenc.backbones.load_exported_encoder`
    rebuilds the network from it.
    """
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
    return path, config, state
