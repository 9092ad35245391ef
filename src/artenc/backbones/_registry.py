"""Name -> backbone factory registry (one registry, one `create_backbone`, cf. timm)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from artenc.errors import UsageError
from artenc.preprocess import PreprocessConfig


@dataclass
class Backbone:
    """A pretrained network plus what it takes to feed it.

    `model` exposes `forward_features(x)` and `forward_head(x, pre_logits=True)`
    (timm's interface); `forward_head(..., pre_logits=True)` returns the pooled
    embedding of size `dim`. `x` is float, normalised with `preprocess.mean/std`.
    """

    name: str
    model: nn.Module
    preprocess: PreprocessConfig
    dim: int
    weights_source: str


Factory = Callable[[str | None], Backbone]
_REGISTRY: dict[str, Factory] = {}


def register_backbone(*names: str) -> Callable[[Factory], Factory]:
    """Decorator registering a factory `f(weights_path_or_None) -> Backbone` under names."""

    def deco(fn: Factory) -> Factory:
        for name in names:
            _REGISTRY[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    """Names registered explicitly (timm and open_clip names are also accepted)."""
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: str | None = None) -> Backbone:
    """Build backbone `name` with pretrained weights (or the local state_dict `weights`).

    Accepted names: registered ones (`list_backbones()`), any timm model name,
    `open_clip:ARCH/PRETRAINED`, or a path to an encoder exported by `artenc train`.
    Raises UsageError for an unknown name, WeightsUnavailableError when weights
    cannot be found offline.
    """
    import os

    from artenc.backbones import exported, open_clip_tower, timm_any

    if name in _REGISTRY:
        return _REGISTRY[name](weights)
    if name.endswith((".pt", ".pth")) or os.path.isdir(name):
        return exported.load_exported_encoder(name)
    if name.startswith("open_clip:"):
        return open_clip_tower.create(name.split(":", 1)[1], weights)
    if timm_any.is_timm_model(name):
        return timm_any.create(name, weights)
    raise UsageError(
        f"unknown model {name!r}. Valid: {', '.join(list_backbones())}; any timm model name "
        "(see timm.list_models()); 'open_clip:ARCH/PRETRAINED'; or the path of an encoder.pt "
        "exported by `artenc train`."
    )
