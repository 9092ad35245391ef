"""Multi-scale pooled features of a frozen timm backbone: the final pooled vector plus the
channel mean and standard deviation of intermediate feature maps.

Channel statistics of intermediate maps are texture / "style" descriptors (Gatys et al.,
"Image Style Transfer Using CNNs", CVPR 2016; Huang & Belongie, AdaIN, ICCV 2017), which
the final ImageNet-pooled vector largely discards. The wrapper keeps timm's interface, so
it runs wherever a backbone does (embedding, ONNX export, exported encoders).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from artenc.backbones import Backbone, create_backbone


class MultiScaleFeatures(nn.Module):
    """`forward_features(x)` -> (N, D + 2 * sum(C_i)): [L2(pooled), L2(mean_i ‖ std_i for each stage i)].

    `stages` index the model's `forward_intermediates` feature maps (timm).
    `forward_head(f, pre_logits=True)` is the identity, as the features are already pooled.
    """

    def __init__(self, model: nn.Module, stages: Sequence[int], dim: int | None = None) -> None:
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(f"{type(model).__name__} has no forward_intermediates (needs a timm model)")
        if not stages:
            raise ValueError("stages must list at least one intermediate feature map index, e.g. [1, 2, 3, 4]")
        self.model, self.stages = model, [int(s) for s in stages]
        with torch.no_grad():
            _, maps = model.eval().forward_intermediates(torch.zeros(1, 3, 64, 64), indices=self.stages)
        self.stat_dim = 2 * sum(m.shape[1] for m in maps)
        self.dim = (dim or model.num_features) + self.stat_dim

    def config(self) -> dict:
        return {"kind": "multiscale", "stages": self.stages}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        final, maps = self.model.forward_intermediates(x, indices=self.stages)
        pooled = self.model.forward_head(final, pre_logits=True).flatten(1)
        stats = torch.cat([torch.cat([m.mean((2, 3)), m.flatten(2).std(2)], 1) for m in maps], 1)
        return torch.cat([F.normalize(pooled, dim=1), F.normalize(stats, dim=1)], 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def multiscale_backbone(name: str = "tf_efficientnet_lite0", weights: str | None = None,
                        stages: Sequence[int] = (0, 1, 2, 3, 4)) -> Backbone:
    """`create_backbone(name, weights)` wrapped in `MultiScaleFeatures`."""
    base = create_backbone(name, weights)
    wrapper = MultiScaleFeatures(base.model, stages, base.dim).eval()
    return Backbone(name=f"{base.name}+multiscale{wrapper.stages}", model=wrapper, preprocess=base.preprocess, dim=wrapper.dim,
                    weights_source=base.weights_source)


def wrap_features(model: nn.Module, config: dict) -> nn.Module:
    """Rebuild the feature wrapper described by `MultiScaleFeatures.config()` around `model`."""
    kind = config.get("kind")
    if kind != "multiscale":
        raise ValueError(f"unknown feature wrapper {kind!r} (known: multiscale)")
    return MultiScaleFeatures(model, config["stages"]).eval()
