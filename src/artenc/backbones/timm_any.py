"""Any timm model by name; pretrained weights through timm's hub cache or a local file."""

from __future__ import annotations

from artenc.backbones._registry import Backbone
from artenc.backbones.weights import load_into, load_state_dict_file
from artenc.errors import WeightsUnavailableError
from artenc.preprocess import PreprocessConfig


def is_timm_model(name: str) -> bool:
    # timm (and torchvision under it) is imported only when a model is built or looked up:
    # the registry is imported by every query path (artenc.runtime), most never need it
    import timm

    return timm.is_model(name.split(".")[0]) if "." in name else timm.is_model(name)


def preprocess_from_timm(model) -> PreprocessConfig:
    """timm's resolved eval data config as a PreprocessConfig."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    return PreprocessConfig(
        size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
    )


def create(name: str, weights: str | None) -> Backbone:
    import timm

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
