"""Loading state_dicts from local files, safely (no arbitrary pickle)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from artenc.errors import UsageError


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from .safetensors or a torch file (weights_only, never arbitrary pickle)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the file's fault
        raise UsageError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"{path}: not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with an error naming the file and the mismatched keys."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:4]
        raise UsageError(
            f"{source}: weights do not match the architecture: {' '.join(first)[:600]}"
        ) from exc


def fingerprint_module(model: nn.Module) -> str:
    """A stable hash of a network's parameters and buffers (identifies the weights), and of
    the `config()` of any feature wrapper in it (the same weights pooled differently differ)."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        if callable(config):
            h.update(f"{name}:{json.dumps(config(), sort_keys=True)}".encode())
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
