"""Logger factories for Hydra configs (W&B stays offline unless a project is configured)."""

from __future__ import annotations

import os
from typing import Any

from artenc.errors import require


def wandb_logger(project: str | None = None, save_dir: str = ".", **kwargs: Any):
    """A Lightning WandbLogger; offline when `project` is None or WANDB_MODE=offline.

    Offline runs write under `save_dir/wandb` and can be uploaded later with `wandb sync`.
    """
    require("wandb", "train")
    from lightning.pytorch.loggers import WandbLogger

    offline = project is None or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled")
    if offline:
        os.environ.setdefault("WANDB_MODE", "offline")
    os.makedirs(save_dir, exist_ok=True)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return WandbLogger(project=project or "artenc", save_dir=save_dir, offline=offline, **kwargs)
