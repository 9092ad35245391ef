"""Pretrained backbones: `create_backbone(name, weights=None)` and the registry."""

from artenc.backbones import efficientnet_lite, torchvision_resnet  # noqa: F401  (registers)
from artenc.backbones._registry import Backbone, create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone"]
