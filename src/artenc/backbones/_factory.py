"""`create_backbone(name)`: one entry point from a model name to a `Backbone` (cf. timm `_factory.py`).

It reads the registry (`_registry`), then falls back to open_clip towers, any timm model and
encoders exported by `artenc train` (which are rebuilt here, around a backbone created by name).
"""

from __future__ import annotations

import os
from pathlib import Path

from artenc.backbones import open_clip_tower, timm_any
from artenc.backbones._registry import Backbone, list_backbones, registered_factory
from artenc.backbones.exported import HeadedEncoder, read_encoder
from artenc.errors import UsageError
from artenc.layers.heads import ProjectionHead
from artenc.layers.pooling import wrap_features
from artenc.preprocess import PreprocessConfig


def create_backbone(name: str, weights: str | None = None) -> Backbone:
    """Build backbone `name` with pretrained weights (or the local state_dict `weights`).

    Accepted names: registered ones (`list_backbones()`), any timm model name,
    `open_clip:ARCH/PRETRAINED`, or a path to an encoder exported by `artenc train`.
    Raises UsageError for an unknown name, WeightsUnavailableError when weights
    cannot be found offline.
    """
    factory = registered_factory(name)
    if factory is not None:
        return factory(weights)
    if name.endswith((".pt", ".pth")) or os.path.isdir(name):
        return load_exported_encoder(name)
    if name.startswith("open_clip:"):
        return open_clip_tower.create(name.split(":", 1)[1], weights)
    if timm_any.is_timm_model(name):
        return timm_any.create(name, weights)
    raise UsageError(
        f"unknown model {name!r}. Valid: {', '.join(list_backbones())}; any timm model name "
        "(see timm.list_models()); 'open_clip:ARCH/PRETRAINED'; or the path of an encoder.pt "
        "exported by `artenc train`."
    )


def load_exported_encoder(path: str | Path) -> Backbone:
    """Rebuild an exported encoder (`exported.save_encoder`) as a Backbone.

    The network is `HeadedEncoder(backbone, ProjectionHead)`, the backbone built from the
    recorded name (a timm architecture without weights, else `create_backbone(name)`), wrapped
    in its feature wrapper when one was recorded, then every weight loaded from the file.
    Its `dim` is the head's output size. Raises UsageError for a missing or foreign file or
    weights that do not match the config.
    """
    timm = timm_any.import_timm()  # heavy (about 2 s): only when an encoder is loaded

    path, config, state = read_encoder(path)
    name = config["backbone"]
    if timm.is_model(name):
        net = timm.create_model(name, pretrained=False)
    else:  # registered non-timm architectures (torchvision): build with their own weights, then overwrite
        net = create_backbone(name).model
    if config.get("features"):
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
