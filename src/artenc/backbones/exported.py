"""Encoders exported by `artenc train`: frozen backbone + projection head + preprocessing.

File format (`encoder.pt`): a torch file holding only tensors and strings,
`{"config": <JSON text>, "state_dict": {name: tensor}}`, read back with
`torch.load(weights_only=True)` — no arbitrary pickled objects. An encoder trained with a
classifier (`loss=ce`) also holds `"classifier": {"weight": (C, D), "bias": (C,)}`, its field
and class names in the config (`"classifier": {"field", "classes"}`); `read_classifier` reads it.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artenc.atomic import atomic_path
from artenc.errors import UsageError
from artenc.layers.heads import ProjectionHead
from artenc.preprocess import PreprocessConfig

FORMAT = "artenc-encoder/1"


class HeadedEncoder(nn.Module):
    """Backbone pooled features followed by a projection head (timm-style interface)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def save_encoder(
    path: str | Path,
    *,
    backbone_name: str,
    backbone: nn.Module,
    head: ProjectionHead,
    preprocess: PreprocessConfig,
    extra: dict | None = None,
    features: dict | None = None,
    classifier: dict | None = None,
) -> Path:
    """Write an exported encoder; returns its path.

    `features`: the config of a feature wrapper around the timm `backbone_name` model
    (`artenc.layers.FeatureWrapper.config()`), None for its plain pooled output.
    `classifier`: `{"field": str, "classes": [str, ...], "weight": (C, D) tensor, "bias": (C,)
    tensor}`, a linear classifier on the unit-norm output (D = the head's output size), or None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "backbone": backbone_name,
        "head": head.config(),
        "preprocess": preprocess.to_dict(),
        "features": features,
        "extra": extra or {},
    }
    encoder = HeadedEncoder(backbone, head)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    blob = {"config": None, "state_dict": state}
    if classifier is not None:
        weight, bias = classifier["weight"].detach().cpu().float(), classifier["bias"].detach().cpu().float()
        if weight.shape != (len(classifier["classes"]), head.out_dim) or bias.shape != (len(classifier["classes"]),):
            raise ValueError(f"classifier weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not match "
                             f"{len(classifier['classes'])} classes x {head.out_dim} dims")
        config["classifier"] = {"field": str(classifier["field"]), "classes": [str(c) for c in classifier["classes"]]}
        blob["classifier"] = {"weight": weight.contiguous(), "bias": bias.contiguous()}
    blob["config"] = json.dumps(config)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


@dataclass(frozen=True)
class EncoderClassifier:
    """The linear classifier of an exported encoder (`loss=ce`): one label field, its classes,
    weight (C, D) and bias (C,) float32 acting on unit-norm embeddings (the stored vectors)."""

    field: str
    classes: list[str]
    weight: np.ndarray
    bias: np.ndarray

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) float32 unit embeddings -> (N, C) float64 class probabilities (softmax of
        `vectors @ weight.T + bias`). Raises ValueError for another dimension."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected (N, {self.weight.shape[1]}) embeddings, got {vectors.shape}")
        logits = vectors @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def model_classifier(model: str | None) -> EncoderClassifier | None:
    """The classifier of `model` (a store's model name) when it is an exported encoder file that
    has one; None for any other model name, a missing file, or an encoder without a classifier."""
    model = str(model or "")
    if not model.endswith((".pt", ".pth")) or not os.path.isfile(model):
        return None
    return read_classifier(model)


def read_classifier(path: str | Path) -> EncoderClassifier | None:
    """The classifier of the exported encoder at `path` (file or folder), None when it has none.
    Cached by path, size and modification time. Raises UsageError as `read_encoder`."""
    path = Path(path)
    if path.is_dir():
        path = path / "encoder.pt"
    stat = os.stat(path) if path.is_file() else None
    return _read_classifier(str(path.resolve()), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1)


@functools.lru_cache(maxsize=8)
def _read_classifier(path: str, size: int, mtime_ns: int) -> EncoderClassifier | None:  # noqa: ARG001 (cache key)
    _, config, _ = read_encoder(path)
    described = config.get("classifier")
    if not described:
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    tensors = blob.get("classifier") or {}
    if "weight" not in tensors or "bias" not in tensors:
        raise UsageError(f"{path}: its config names a classifier but the file holds no classifier weights")
    return EncoderClassifier(described["field"], list(described["classes"]),
                             tensors["weight"].numpy().astype(np.float32), tensors["bias"].numpy().astype(np.float32))


def read_encoder(path: str | Path) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    """Read an exported encoder file: (its path, the config, the state_dict of `HeadedEncoder`).

    `path` is the `encoder.pt` file or its folder. Raises UsageError when the file is missing,
    is not an artenc encoder, or has another format version. `artenc.backbones.load_exported_encoder`
    rebuilds the network from it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "encoder.pt"
    if not path.is_file():
        raise UsageError(f"{path}: encoder file not found (expected the encoder.pt written by `artenc train`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        config = json.loads(blob["config"])
        state = blob["state_dict"]
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: not an artenc encoder file ({type(exc).__name__}: {exc})") from exc
    if config.get("format") != FORMAT:
        raise UsageError(f"{path}: unsupported encoder format {config.get('format')!r} (expected {FORMAT})")
    return path, config, state
