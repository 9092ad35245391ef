"""Pretrained backbones whose output is a feature wrapper (`artenc.layers.pooling`) by name.

Hydra configs name these factories (`configs/backbone/lite0_multiscale.yaml`,
`lite0_texture.yaml`); `artenc.layers.wrap_features` rebuilds the same wrappers from their
`config()` when an exported encoder is loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from artenc.backbones._factory import create_backbone
from artenc.backbones._registry import Backbone
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
