"""Inference building blocks around a backbone (cf. timm `timm/layers`): projection heads and
feature wrappers (texture statistics). Plain `torch.nn` modules that import no other layer of
artenc, so backbones, the encoder runtime and training all build on them.
"""

from artenc.layers.heads import ProjectionHead, Standardize, linear_head, simclr_head
from artenc.layers.pooling import (
    FeatureWrapper,
    LayerStatistics,
    MultiScaleFeatures,
    channel_covariance,
    wrap_features,
)

__all__ = [
    "FeatureWrapper",
    "LayerStatistics",
    "MultiScaleFeatures",
    "ProjectionHead",
    "Standardize",
    "channel_covariance",
    "linear_head",
    "simclr_head",
    "wrap_features",
]
