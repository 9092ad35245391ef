"""A backbone cut before its last N stages: a frozen part and a trainable part.

Fine-tuning only the last stages of a pretrained CNN (Yosinski et al., "How transferable are
features in deep neural networks?", NeurIPS 2014) keeps the generic early layers and adapts the
specific late ones. `StagedFeatures` cuts a timm model (or a feature wrapper around one,
`artenc.layers.pooling`) so that

    features(x) == finish(*frozen(x))

where `frozen(x)` returns the input of the first trainable stage (a feature map) plus the
statistics the wrapper reads from layers of the frozen part (already pooled), and `finish`
runs the trainable stages and the pooling. The frozen outputs can be computed once per image
view and cached (`artenc.data.feature_cache.ActivationEncoder`), so training the last stages
costs only their own compute.

Stages of the supported architectures, in order (their modules are called one after another,
as the model's `forward_features` does; checked on a dummy input when the cut is made):
- EfficientNet / MobileNet families (timm: `conv_stem`, `blocks`, `conv_head`): the stem
  (`conv_stem`, `bn1`), each entry of `blocks`, the head convolution (`conv_head`, `bn2`).
  `tf_efficientnet_lite0` has 9: trainable=1 is the 1x1 head convolution, 2 adds `blocks.6`,
  3 adds `blocks.5`.
- ResNets (timm: `conv1`, `layer1..4`): the stem (`conv1`, `bn1`, `act1`, `maxpool`), `layer1..4`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from artenc.layers.pooling import FeatureWrapper, LayerStatistics

BatchNormPolicy = Literal["frozen", "train"]
BN_POLICIES = ("frozen", "train")


def model_stages(model: nn.Module) -> list[list[str]]:
    """The stages of a timm model as lists of top-level module names, in forward order.

    Raises:
        ValueError: an architecture whose stages are not known (see the module docstring).
    """
    if all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        return [["conv_stem", "bn1"], *[[f"blocks.{i}"] for i in range(len(model.blocks))], ["conv_head", "bn2"]]
    if all(hasattr(model, a) for a in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer4")):
        return [["conv1", "bn1", "act1", "maxpool"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    raise ValueError(f"{type(model).__name__}: its stages are not known, so it cannot be partly trained "
                     "(supported: timm EfficientNet/MobileNet and ResNet families)")


def _run_stages(model: nn.Module, stages: list[list[str]], x: torch.Tensor) -> torch.Tensor:
    for stage in stages:
        for name in stage:
            x = model.get_submodule(name)(x)
    return x


def _stage_of(layer: str, stages: list[list[str]]) -> int:
    """Index of the stage holding module `layer` (a name of `named_modules()`)."""
    for i, stage in enumerate(stages):
        if any(layer == n or layer.startswith(n + ".") for n in stage):
            return i
    raise ValueError(f"layer {layer!r} is in no stage ({stages})")


class StagedFeatures(nn.Module):
    """`net` (a timm model or a `LayerStatistics` around one) cut before its last `trainable` stages.

    `frozen(x)`: normalised float images (N, 3, H, W) -> (map (N, C, h, w), extra (N, E)): the
    input of the first trainable stage and the wrapper's statistics of frozen layers (E = 0 for
    a plain model). `finish(map, extra)` -> pooled features (N, D), exactly `net`'s
    `forward_head(forward_features(x), pre_logits=True)`. `pack` / `unpack` turn the pair into one
    (N, C*h*w + E) row and back, the form the feature cache stores.

    The modules are shared with `net` (no copy): training the stages trains `net`, so an encoder
    exported from `net` carries the trained weights.

    Raises:
        ValueError: `trainable` outside 1..number of stages, an unknown architecture, a wrapper
            other than `LayerStatistics`, or stages that do not reproduce `forward_features`.
    """

    def __init__(self, net: nn.Module, trainable: int, size: int = 64) -> None:
        super().__init__()
        if isinstance(net, FeatureWrapper) and not isinstance(net, LayerStatistics):
            raise ValueError(f"{type(net).__name__} cannot be partly trained (plain models and LayerStatistics can)")
        self.net = net
        self.base = net.model if isinstance(net, LayerStatistics) else net
        self.stages = model_stages(self.base)
        if not 1 <= trainable <= len(self.stages):
            raise ValueError(f"trainable must be 1..{len(self.stages)} (the stages of {type(self.base).__name__}), "
                             f"got {trainable}")
        self.trainable = trainable
        self.cut = len(self.stages) - trainable
        if isinstance(net, LayerStatistics):
            self._frozen_layers = [n for n in net._hooked if _stage_of(n, self.stages) < self.cut]
        else:
            self._frozen_layers = []
        with torch.no_grad():
            was = net.training
            net.eval()
            probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            reference = net.forward_head(net.forward_features(probe), pre_logits=True)
            fmap, extra = self.frozen(probe)
            self.channels = int(fmap.shape[1])
            self.extra_dim = int(extra.shape[1])
            self.dim = int(reference.flatten(1).shape[1])
            if not torch.allclose(self.finish(fmap, extra), reference, atol=1e-5, rtol=1e-4):
                raise ValueError(f"the stages of {type(self.base).__name__} do not reproduce its forward_features")
            net.train(was)

    def trainable_modules(self) -> list[nn.Module]:
        """The modules of the trainable stages."""
        return [self.base.get_submodule(n) for stage in self.stages[self.cut:] for n in stage]

    def frozen_modules(self) -> list[nn.Module]:
        """The modules of the frozen stages."""
        return [self.base.get_submodule(n) for stage in self.stages[: self.cut] for n in stage]

    def describe(self) -> dict:
        """JSON-ready description of the cut (used in cache keys)."""
        config = self.net.config() if isinstance(self.net, LayerStatistics) else None
        return {"stages": self.stages, "trainable": self.trainable, "wrapper": config}

    def _pop(self, names: list[str]) -> dict[str, torch.Tensor]:
        return {n: self.base.get_submodule(n).__dict__.pop("_artenc_output") for n in names}

    def frozen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) normalised images -> (map (N, C, h, w), extra (N, E))."""
        fmap = _run_stages(self.base, self.stages[: self.cut], x)
        if not self._frozen_layers:
            return fmap, fmap.new_zeros((len(fmap), 0))
        parts = self.net.statistics(self._pop(self._frozen_layers))
        return fmap, torch.cat([p for _, p in parts], 1)

    def finish(self, fmap: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """(map, extra) from `frozen` -> pooled features (N, D)."""
        out = _run_stages(self.base, self.stages[self.cut:], fmap)
        if not isinstance(self.net, LayerStatistics):
            return self.net.forward_head(out, pre_logits=True).flatten(1)
        live = [n for n in self.net._hooked if n not in self._frozen_layers]
        maps = self._pop(live)
        # the frozen parts, in the order statistics() lists them, split back out of `extra`
        frozen_parts, offset = {}, 0
        for key, width in self.net.statistic_widths(self._frozen_layers):
            frozen_parts[key] = extra[:, offset:offset + width]
            offset += width
        live_parts = dict(self.net.statistics(maps))
        return torch.cat([frozen_parts[key] if key in frozen_parts else live_parts[key]
                          for key in self.net.statistic_keys()], 1)

    def pack(self, fmap: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """(map, extra) -> (N, C*h*w + E), one row per image view."""
        return torch.cat([fmap.flatten(1), extra], 1)

    def unpack(self, packed: torch.Tensor,
               memory_format: torch.memory_format = torch.contiguous_format) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of `pack`: (N, C*h*w + E) -> (map (N, C, h, w) in `memory_format`, extra (N, E))."""
        n_map = packed.shape[1] - self.extra_dim
        side = math.isqrt(n_map // self.channels)  # square inputs: a square map
        fmap = packed[:, :n_map].reshape(len(packed), self.channels, side, side)
        return fmap.contiguous(memory_format=memory_format), packed[:, n_map:]

    def unit_features(self, packed: torch.Tensor,
                      memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """Packed activations (N, M) float -> L2-normalised features (N, D) float32: what
        `PartlyTrainableBackbone` (and the exported encoder) computes from them."""
        fmap, extra = self.unpack(packed.to(torch.float32), memory_format)
        return F.normalize(self.finish(fmap, extra).float().flatten(1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(*self.frozen(x))


class PartlyTrainableBackbone(nn.Module):
    """The backbone side of training with its last `trainable` stages unfrozen.

    Input: uint8 images (N, 3, H, W), normalised with `scale` / `shift` as
    `artenc.runtime.EmbeddingModule` does and run through the frozen part without gradients,
    or packed cached activations (N, M) float (`StagedFeatures.pack`). Output: L2-normalised
    features (N, D), the same vectors as `EmbeddingModule` for the same weights.

    `bn`: "frozen" (default) keeps the BatchNorm layers of the trainable stages in eval mode
    (running statistics fixed, affine weights still trained: the usual choice for small
    batches); "train" updates their statistics from each batch. The frozen stages are always in
    eval mode and never get gradients.
    """

    def __init__(self, embedding: nn.Module, trainable: int, bn: BatchNormPolicy = "frozen",
                 channels_last: bool = True) -> None:
        super().__init__()
        if bn not in BN_POLICIES:
            raise ValueError(f"bn must be one of {BN_POLICIES}, got {bn!r}")
        self.embedding, self.bn = embedding, bn
        self.staged = StagedFeatures(embedding.model, trainable)
        # NHWC (channels_last): oneDNN's convolutions, depthwise above all, train faster on CPU
        # than in NCHW (scripts/bench_train.py measures both); the same numbers up to rounding
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        embedding.model.to(memory_format=self.memory_format)
        embedding.model.requires_grad_(False)
        for module in self.staged.trainable_modules():
            module.requires_grad_(True)
        self.train(True)  # modules start in training mode; Lightning keeps the mode it finds

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.staged.trainable_modules() for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> PartlyTrainableBackbone:
        super().train(False)
        for module in self.staged.trainable_modules():
            module.train(mode)
            if self.bn == "frozen":
                for sub in module.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.eval()
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return self.staged.unit_features(x, self.memory_format)
        with torch.no_grad():
            images = x.to(self.embedding.scale.dtype) * self.embedding.scale + self.embedding.shift
            fmap, extra = self.staged.frozen(images.contiguous(memory_format=self.memory_format))
        return F.normalize(self.staged.finish(fmap, extra).float().flatten(1), dim=1)
