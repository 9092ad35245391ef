"""Any timm model by name; pretrained weights through timm's hub cache or a local file."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from artenc.backbones._registry import Backbone
from artenc.backbones.weights import load_into, load_state_dict_file
from artenc.errors import WeightsUnavailableError
from artenc.preprocess import PreprocessConfig


def import_timm() -> ModuleType:
    """Import `timm` (with `timm.data`) without importing Weights & Biases.

    timm's `timm.utils.summary` runs `try: import wandb` at import time, for its own training
    scripts' `update_summary(log_wandb=True)`, which artenc never calls; with wandb installed
    (the `train` extra) that costs about a second and wandb's console hooks on every command
    that loads an encoder (similar, predict, embed). The name is hidden while timm is imported
    (`sys.modules["wandb"] = None` makes that import fail as if wandb were absent) and then
    restored, so training's own `import wandb` (models/loggers.py) still works. Returns the
    `timm` module. Source: timm/utils/summary.py (timm >= 0.9).
    """
    if "timm" in sys.modules:
        return sys.modules["timm"]
    hide = "wandb" not in sys.modules
    if hide:
        sys.modules["wandb"] = None  # type: ignore[assignment]
    try:
        timm = importlib.import_module("timm")
        importlib.import_module("timm.data")
    finally:
        if hide and sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
    return timm


def is_timm_model(name: str) -> bool:
    # timm (and torchvision under it) is imported only when a model is built or looked up:
    # the registry is imported by every query path (artenc.runtime), most never need it
    timm = import_timm()

    return timm.is_model(name.split(".")[0]) if "." in name else timm.is_model(name)


def preprocess_from_timm(model) -> PreprocessConfig:
    """timm's resolved eval data config as a PreprocessConfig."""
    timm = import_timm()

    cfg = timm.data.resolve_data_config({}, model=model)
    return PreprocessConfig(
        size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
    )


def create(name: str, weights: str | None) -> Backbone:
    timm = import_timm()

    if weights:
        model = timm.create_model(name, pretrained=False)
        load_into(model, load_state_dict_file(weights), weights)
        source = weights
    else:
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
            hub_id = timm.models.get_pretrained_cfg(name.split(".")[0])
            where = getattr(hub_id, "hf_hub_id", None) or getattr(hub_id, "url", None) or "the timm hub"
            raise WeightsUnavailableError(
                f"{name}: pretrained weights are not cached and could not be downloaded from {where} "
                f"({type(exc).__name__}). Download them where there is network (they are cached under "
                "~/.cache/huggingface/hub) or pass weights=PATH, a local state_dict."
            ) from exc
        source = f"timm:{name}"
    model.eval()
    return Backbone(name=name, model=model, preprocess=preprocess_from_timm(model), dim=model.num_features, weights_source=source)
