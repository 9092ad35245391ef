"""torchvision ResNet-18/34/50 (img2vec's and the workshops' models) via torchvision's weights API."""

from __future__ import annotations

import torch
from torch import nn

from artenc.backbones._registry import Backbone, register_backbone
from artenc.backbones.weights import load_into, load_state_dict_file
from artenc.errors import WeightsUnavailableError
from artenc.preprocess import PreprocessConfig


def _preprocess_of(enum) -> PreprocessConfig:
    """The eval transform torchvision documents for these weights (ResNet-50 V2: 232 -> 224)."""
    t = enum.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    return PreprocessConfig(
        size=crop,
        crop_pct=crop / resize,
        interpolation=t.interpolation.value,
        mean=tuple(t.mean),
        std=tuple(t.std),
    )


class ResNetFeatures(nn.Module):
    """A torchvision ResNet with timm's `forward_features` / `forward_head` interface."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.num_features = net.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.net.avgpool(x), 1)
        return x if pre_logits else self.net.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Accept plain torchvision state_dicts (without the `net.` prefix)."""
        if state_dict and not next(iter(state_dict)).startswith("net."):
            state_dict = {f"net.{k}": v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _create(depth: int, weights: str | None) -> Backbone:
    import torchvision  # about 1 s: only when a model is built (see timm_any.is_timm_model)

    builder = getattr(torchvision.models, f"resnet{depth}")
    enum = torchvision.models.get_model_weights(f"resnet{depth}").DEFAULT
    model = ResNetFeatures(builder(weights=None))
    if weights:
        load_into(model, load_state_dict_file(weights), weights)
        source = weights
    else:
        hub_dir = torch.hub.get_dir()
        filename = enum.url.rsplit("/", 1)[-1]
        try:
            sd = enum.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - URLError, socket errors, hash mismatch...
            raise WeightsUnavailableError(
                f"resnet{depth}: pretrained weights are not in the cache ({hub_dir}/checkpoints/{filename}) "
                f"and could not be downloaded from {enum.url} ({type(exc).__name__}). Download that file on a "
                f"machine with network and copy it to {hub_dir}/checkpoints/, or pass weights=PATH."
            ) from exc
        load_into(model, sd, enum.url)
        source = enum.url
    model.eval()
    return Backbone(name=f"resnet{depth}", model=model, preprocess=_preprocess_of(enum), dim=model.num_features, weights_source=source)


@register_backbone("resnet18")
def resnet18(weights: str | None = None) -> Backbone:
    return _create(18, weights)


@register_backbone("resnet34")
def resnet34(weights: str | None = None) -> Backbone:
    return _create(34, weights)


@register_backbone("resnet50")
def resnet50(weights: str | None = None) -> Backbone:
    return _create(50, weights)
