"""Texture ("style") features of a frozen backbone beyond its final pooled vector.

Channel statistics of intermediate maps are texture / style descriptors (Gatys et al.,
"Image Style Transfer Using CNNs", CVPR 2016; Huang & Belongie, AdaIN, ICCV 2017), which
the final ImageNet-pooled vector largely discards:

- `MultiScaleFeatures`: pooled vector + channel mean/std of timm's intermediate stages.
- `LayerStatistics`: channel mean/std of any named layers + the channel covariance
  (second-order pooling, Lin et al., "Bilinear CNNs", ICCV 2015) of some of them.

Both keep timm's interface, so they run wherever a backbone does (embedding, ONNX export,
exported encoders), and `config()` / `wrap_features` rebuild them from JSON. They wrap any
`nn.Module`; `artenc.backbones.multiscale_backbone` / `layer_stats_backbone` wrap a pretrained
backbone by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FeatureWrapper(nn.Module):
    """Base of the wrappers: features are already pooled, so `forward_head` is the identity."""

    def config(self) -> dict:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class MultiScaleFeatures(FeatureWrapper):
    """`forward_features(x)` -> (N, D + 2 * sum(C_i)): [L2(pooled), L2(mean_i ‖ std_i for each stage i)].

    `stages` index the model's `forward_intermediates` feature maps (timm).
    `forward_head(f, pre_logits=True)` is the identity, as the features are already pooled.
    """

    def __init__(self, model: nn.Module, stages: Sequence[int], dim: int | None = None) -> None:
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(f"{type(model).__name__} has no forward_intermediates (needs a timm model)")
        if not stages:
            raise ValueError("stages must list at least one intermediate feature map index, e.g. [1, 2, 3, 4]")
        self.model, self.stages = model, [int(s) for s in stages]
        with torch.no_grad():
            _, maps = model.eval().forward_intermediates(torch.zeros(1, 3, 64, 64), indices=self.stages)
        self.stat_dim = 2 * sum(m.shape[1] for m in maps)
        self.dim = (dim or model.num_features) + self.stat_dim

    def config(self) -> dict:
        return {"kind": "multiscale", "stages": self.stages}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        final, maps = self.model.forward_intermediates(x, indices=self.stages)
        pooled = self.model.forward_head(final, pre_logits=True).flatten(1)
        stats = torch.cat([torch.cat([m.mean((2, 3)), m.flatten(2).std(2)], 1) for m in maps], 1)
        return torch.cat([F.normalize(pooled, dim=1), F.normalize(stats, dim=1)], 1)


def _keep_output(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
    """Forward hook: keep the layer's output on the module until `LayerStatistics` reads it."""
    module.__dict__["_artenc_output"] = output


def channel_covariance(x: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, len(upper)): the spatial covariance of the channels, its entries
    at the flat indices `upper` (the upper triangle), with signed square root
    (power normalisation, Perronnin et al., ECCV 2010)."""
    flat = x.flatten(2)
    centred = flat - flat.mean(2, keepdim=True)
    cov = torch.bmm(centred, centred.transpose(1, 2)) / flat.shape[2]
    values = cov.flatten(1).index_select(1, upper)
    return values.sign() * values.abs().sqrt()


class LayerStatistics(FeatureWrapper):
    """`forward_features(x)` -> concatenation of unit vectors, one per statistic:
    channel mean and channel std of each of `layers`, then the channel covariance
    (`channel_covariance`) of each of `covariance_layers`.

    Layers are module names of the wrapped model (`model.named_modules()`, e.g. "blocks.5",
    "bn2"), read with forward hooks, so any architecture works. Each statistic is
    L2-normalised on its own, so a 18k-entry covariance weighs as much as a 192-entry mean.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], covariance_layers: Sequence[str] = ()) -> None:
        super().__init__()
        self.model, self.layers, self.covariance_layers = model, list(layers), list(covariance_layers)
        if not self.layers and not self.covariance_layers:
            raise ValueError("LayerStatistics needs at least one layer, e.g. layers=['blocks.5', 'bn2']")
        self._hooked = list(dict.fromkeys([*self.layers, *self.covariance_layers]))  # each layer once
        modules = dict(model.named_modules())
        missing = [n for n in self._hooked if n not in modules or not n]
        if missing:
            some = ", ".join(n for n in list(modules)[1:12])
            raise ValueError(f"{type(model).__name__} has no layer named {sorted(missing)} (some names: {some}, ...)")
        for name in self._hooked:
            modules[name].register_forward_hook(_keep_output)
        with torch.no_grad():
            channels = {n: m.shape[1] for n, m in self._run(torch.zeros(1, 3, 64, 64)).items()}
        self.channels = channels
        uppers = []
        for name in self.covariance_layers:
            rows, cols = torch.triu_indices(channels[name], channels[name])
            uppers.append(rows * channels[name] + cols)
        for i, upper in enumerate(uppers):
            self.register_buffer(f"upper_{i}", upper, persistent=False)
        self.dim = 2 * sum(channels[n] for n in self.layers) + sum(u.numel() for u in uppers)

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model; the outputs of the hooked layers by name."""
        self.model.forward_features(x)
        maps = {}
        for name in self._hooked:
            module = self.model.get_submodule(name)
            maps[name] = module.__dict__.pop("_artenc_output", None)
            if maps[name] is None:
                raise ValueError(f"layer {name!r} is not run by {type(self.model).__name__}.forward_features")
        return maps

    def config(self) -> dict:
        return {"kind": "layer_stats", "layers": self.layers, "covariance_layers": self.covariance_layers}

    def statistic_keys(self) -> list[tuple[str, str]]:
        """The statistics in output order: ("mean" | "std" | "cov", layer name)."""
        keys = [(kind, name) for name in self.layers for kind in ("mean", "std")]
        return keys + [("cov", name) for name in self.covariance_layers]

    def statistic_widths(self, layers: list[str]) -> list[tuple[tuple[str, str], int]]:
        """(key, width) of the statistics of `layers`, in output order."""
        out = []
        for kind, name in self.statistic_keys():
            if name in layers:
                c = self.channels[name]
                out.append(((kind, name), c * (c + 1) // 2 if kind == "cov" else c))
        return out

    def statistics(self, maps: dict[str, torch.Tensor]) -> list[tuple[tuple[str, str], torch.Tensor]]:
        """The unit-vector statistics (N, width) of the layer outputs in `maps`, in output order."""
        out = []
        for kind, name in self.statistic_keys():
            if name not in maps:
                continue
            if kind == "cov":
                part = channel_covariance(maps[name], getattr(self, f"upper_{self.covariance_layers.index(name)}"))
            else:
                flat = maps[name].flatten(2)
                part = flat.mean(2) if kind == "mean" else flat.std(2)
            out.append(((kind, name), F.normalize(part, dim=1)))
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([p for _, p in self.statistics(self._run(x))], 1)


def wrap_features(model: nn.Module, config: dict) -> FeatureWrapper:
    """Rebuild the feature wrapper described by a wrapper's `config()` around `model`."""
    kind = config.get("kind")
    if kind == "multiscale":
        return MultiScaleFeatures(model, config["stages"]).eval()
    if kind == "layer_stats":
        return LayerStatistics(model, config["layers"], config.get("covariance_layers", ())).eval()
    raise ValueError(f"unknown feature wrapper {kind!r} (known: multiscale, layer_stats)")
