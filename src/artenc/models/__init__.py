"""Training parts run by Lightning: the contrastive LightningModule, callbacks and loggers.

Inference modules (projection heads, feature wrappers) live in `artenc.layers`, pretrained
networks in `artenc.backbones`.
"""
