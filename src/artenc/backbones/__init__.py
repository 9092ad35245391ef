"""Pretrained backbones: `create_backbone(name, weights=None)` and the registry.

Importing the package registers the built-in architectures (EfficientNet-Lite, torchvision
ResNets); `create_backbone` also accepts any timm name, `open_clip:ARCH/PRETRAINED` and the
path of an encoder exported by `artenc train`.
"""

from artenc.backbones import efficientnet_lite, torchvision_resnet  # noqa: F401  (registers)
from artenc.backbones._factory import create_backbone, load_exported_encoder
from artenc.backbones._registry import Backbone, list_backbones, register_backbone
from artenc.backbones.exported import (
    EncoderClassifier,
    HeadedEncoder,
    model_classifier,
    read_classifier,
    save_encoder,
)
from artenc.backbones.features import layer_stats_backbone, multiscale_backbone

__all__ = [
    "Backbone",
    "EncoderClassifier",
    "HeadedEncoder",
    "create_backbone",
    "layer_stats_backbone",
    "list_backbones",
    "load_exported_encoder",
    "model_classifier",
    "multiscale_backbone",
    "read_classifier",
    "register_backbone",
    "save_encoder",
]
