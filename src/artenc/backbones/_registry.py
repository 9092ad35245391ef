"""Name -> backbone factory registry (cf. timm `_registry.py`); `_factory.create_backbone` reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

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


def registered_factory(name: str) -> Factory | None:
    """The factory registered under `name`, None when there is none."""
    return _REGISTRY.get(name)
