"""Pretrained backbones whose output is a feature wrapper (`artenc.layers.pooling`) by name.

Hydra configs name these factories (`configs/backbone/lite0_multiscale.yaml`,
`lite0_texture.yaml`); `artenc.layers.wrap_features` rebuilds the same wrappers from their
`config()` when an exported encoder is loaded. `lite0-texture` is also a registered model
name (`artenc embed --model lite0-texture`): the texture statistics the label audit reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

from artenc.backbones._factory import create_backbone
from artenc.backbones._registry import Backbone, register_backbone
from artenc.layers.pooling import LayerStatistics, MultiScaleFeatures


def multiscale_backbone(name: str = "tf_efficientnet_lite0", weights: str | None = None,
                        stages: Sequence[int] = (0, 1, 2, 3, 4)) -> Backbone:
    """`create_backbone(name, weights)` wrapped in `MultiScaleFeatures` (timm models only).

    Its `dim` is the pooled size plus 2 x the channels of the chosen stages; raises ValueError
    for a model without `forward_intermediates` or an empty `stages`.
    """
    base = create_backbone(name, weights)
    wrapper = MultiScaleFeatures(base.model, stages, base.dim).eval()
    return Backbone(name=f"{base.name}+multiscale{wrapper.stages}", model=wrapper, preprocess=base.preprocess, dim=wrapper.dim,
                    weights_source=base.weights_source)


def layer_stats_backbone(name: str = "tf_efficientnet_lite0", weights: str | None = None,
                         layers: Sequence[str] = ("bn2",), covariance_layers: Sequence[str] = ()) -> Backbone:
    """`create_backbone(name, weights)` wrapped in `LayerStatistics`.

    Its name carries a hash of the wrapper's config, so stores of different layer choices do
    not mix; raises ValueError for a layer name the model does not have.
    """
    base = create_backbone(name, weights)
    wrapper = LayerStatistics(base.model, layers, covariance_layers).eval()
    tag = hashlib.sha256(json.dumps(wrapper.config(), sort_keys=True).encode()).hexdigest()[:8]
    return Backbone(name=f"{base.name}+layerstats-{tag}", model=wrapper, preprocess=base.preprocess, dim=wrapper.dim,
                    weights_source=base.weights_source)


# The texture statistics of `lite0-texture` (and of the training config `backbone=lite0_texture`):
# channel mean/std of the 6 block outputs after the stem block and of the final 1280-channel map
# (its mean is the usual pooled vector), plus the channel covariance of blocks 1, 3, 4 and 5:
# 4,096 + 28,396 = 32,492 dims.
TEXTURE_LAYERS = ("blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "bn2")
TEXTURE_COVARIANCE_LAYERS = ("blocks.1", "blocks.3", "blocks.4", "blocks.5")


@register_backbone("lite0-texture", "lite0_texture")
def lite0_texture(weights: str | None = None) -> Backbone:
    """Frozen tf_efficientnet_lite0 read as texture statistics (`LayerStatistics` of
    `TEXTURE_LAYERS`, covariance of `TEXTURE_COVARIANCE_LAYERS`): (N, 32492) float32.

    Style lives in these second-order statistics (Gatys et al., CVPR 2016) far more than in
    the pooled ImageNet vector: on WikiArt dev rows a linear probe reads style at 0.61
    accuracy against 0.44 for the pooled vector, and the label audit ranks planted wrong
    styles better (`scripts/bench_label_errors.py`). `weights`: a lite0 state_dict file
    (default: the packaged ImageNet weights). The store records the name `lite0-texture`
    (so queries are embedded the same way) and a fingerprint that covers the layer choice,
    so vectors of other layers never mix with these.
    """
    backbone = layer_stats_backbone("tf_efficientnet_lite0", weights, TEXTURE_LAYERS, TEXTURE_COVARIANCE_LAYERS)
    return dataclasses.replace(backbone, name="lite0-texture")
