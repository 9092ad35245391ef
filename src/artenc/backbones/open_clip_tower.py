"""open_clip image towers (`open_clip:ARCH/PRETRAINED`), an optional dependency."""

from __future__ import annotations

import torch
from torch import nn

from artenc.backbones._registry import Backbone
from artenc.backbones.weights import load_into, load_state_dict_file
from artenc.errors import WeightsUnavailableError, require
from artenc.preprocess import PreprocessConfig


class ClipImageTower(nn.Module):
    """open_clip's visual tower behind timm's interface (features are the image embedding)."""

    def __init__(self, visual: nn.Module, dim: int) -> None:
        super().__init__()
        self.visual = visual
        self.num_features = dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def create(spec: str, weights: str | None) -> Backbone:
    open_clip = require("open_clip", "clip")
    arch, _, pretrained = spec.partition("/")
    try:
        model, _, transform = open_clip.create_model_and_transforms(
            arch, pretrained=None if weights else (pretrained or None)
        )
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailableError(
            f"open_clip:{spec}: weights could not be loaded ({type(exc).__name__}: {exc}). Without network, "
            "pass weights=PATH, a local open_clip checkpoint."
        ) from exc
    if weights:
        load_into(model, load_state_dict_file(weights), weights)
    pp = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else int(size)
    pre = PreprocessConfig(
        size=size,
        crop_pct=1.0,
        interpolation=str(pp.get("interpolation", "bicubic")),
        mean=tuple(pp.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pp.get("std", (0.26862954, 0.26130258, 0.27577711))),
    )
    dim = int(model.visual.output_dim)
    tower = ClipImageTower(model.visual, dim).eval()
    return Backbone(name=f"open_clip:{spec}", model=tower, preprocess=pre, dim=dim, weights_source=weights or spec)
