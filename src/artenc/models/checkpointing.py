"""Checkpoints that hold what training changes: the trainable weights, not the frozen backbone.

A frozen backbone is rebuilt from its config (name and weights file) on every run, so saving
it in each checkpoint only costs disk (35 MB for a 1.45 M-parameter head). The rule, which
stays right when some backbone stages are un-frozen: keep every parameter that requires a
gradient and every buffer (BatchNorm running statistics) of a trainable module; a module is
trainable when a parameter of it or of its sub-modules requires a gradient (a module without
parameters of its own, e.g. BatchNorm without affine weights, follows its parent).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _has_trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def trainable_keys(module: nn.Module) -> set[str]:
    """State-dict keys of `module` that training changes (see the module docstring)."""
    keys = {name for name, p in module.named_parameters() if p.requires_grad}
    modules = dict(module.named_modules())
    for name, _ in module.named_buffers():
        owner_name = name.rpartition(".")[0]
        owner = modules[owner_name]
        if next(owner.parameters(recurse=False), None) is None and owner_name:
            owner = modules[owner_name.rpartition(".")[0]]  # parameter-less: follow the parent
        if _has_trainable(owner):
            keys.add(name)
    return keys


def trainable_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state_dict` (of `module`) restricted to `trainable_keys(module)`; keys that are not
    `module`'s own (e.g. added by a wrapper) are kept."""
    own = set(module.state_dict().keys())
    keep = trainable_keys(module)
    return {k: v for k, v in state_dict.items() if k in keep or k not in own}


def frozen_reference(module: nn.Module, reference: Mapping | None) -> dict:
    """What a checkpoint left out: the caller's `reference` (e.g. the backbone config: name,
    weights file) and the number of frozen tensors and values."""
    keep = trainable_keys(module)
    frozen = {k: v for k, v in module.state_dict().items() if k not in keep}
    return {"backbone": dict(reference or {}), "tensors": len(frozen),
            "values": int(sum(v.numel() for v in frozen.values()))}


def with_frozen_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state_dict` completed with `module`'s current values of the frozen keys it lacks (a
    checkpoint written by `trainable_state_dict`); a trainable key it lacks stays missing."""
    keep = trainable_keys(module)
    full = dict(state_dict)
    for key, value in module.state_dict().items():
        if key not in full and key not in keep:
            full[key] = value
    return full
