"""LightningModule: a frozen backbone, a trainable projection head and a contrastive loss.

Batches are `(x, labels)`: x is either uint8 images (N, V, 3, H, W), which go through
the frozen backbone, or cached backbone features (N, V, D) float. labels: (N, F) int64.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artenc.evaluate import retrieval_metrics
from artenc.models.checkpointing import frozen_reference, trainable_state_dict, with_frozen_weights
from artenc.models.schedules import warmup_cosine

__all__ = ["ContrastiveModule", "FrozenBackbone", "warmup_cosine"]

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

log = logging.getLogger(__name__)


class FrozenBackbone(nn.Module):
    """Wraps a module mapping uint8 images (N, 3, H, W) to features; never trains, stays in eval."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenBackbone:  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)


class ContrastiveModule(L.LightningModule):
    """Train `head` on frozen `backbone` features with `loss(z (N,V,D'), labels (N,F))`.

    `optimizer` is a partial taking the parameters; `scheduler`, optional, a partial taking
    (optimizer, total_steps), stepped every batch. Validation embeds the clean view and logs
    retrieval metrics per label field (`val/p_at_k`, `val/map_at_k`, `val/r_at_k`,
    `val/knn_accuracy`: the mean over fields; `val/<field>/<metric>` each), leave-one-out
    within the validation set; `trainer.validate` adds `val/linear_probe_accuracy` and logs
    the metrics' warnings (a validation set too small for k, kNN below chance). No bootstrap
    intervals here: they are `artenc evaluate`'s job, and would slow every epoch.
    `feature_noise` adds Gaussian noise to training features (a cheap extra augmentation).
    With no label field (an unlabelled folder, self-supervised loss) the label-based
    validation metrics are skipped, with one note.

    Checkpoints hold the trainable weights only (`models.checkpointing.trainable_state_dict`)
    and a reference to the frozen backbone (`backbone_reference`, under "artenc_frozen"); the
    frozen weights are taken from the module on loading (`load_state_dict`).
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, loss: nn.Module, optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None, label_fields: Sequence[str] = ("label",), k: int = 10,
        feature_noise: float = 0.0,
    ) -> None:
        super().__init__()
        if feature_noise < 0:
            raise ValueError(f"feature_noise must be >= 0, got {feature_noise}")
        self.backbone = backbone if isinstance(backbone, FrozenBackbone) else FrozenBackbone(backbone)
        self.head, self.loss = head, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.label_fields, self.k, self.feature_noise = list(label_fields), k, feature_noise
        self._val_z: list[torch.Tensor] = []
        self._val_y: list[torch.Tensor] = []
        self.val_embeddings: np.ndarray | None = None
        self.val_labels: np.ndarray | None = None
        self.backbone_reference: dict | None = None  # what the frozen weights are (train() sets it)
        self._noted_unlabelled = False
        self.save_hyperparameters({"label_fields": self.label_fields, "k": k, "feature_noise": feature_noise})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, V, 3, H, W) uint8 images or (N, V, D) features -> (N, V, D) backbone features."""
        if x.dtype == torch.uint8:
            n, v = x.shape[:2]
            return self.backbone(x.flatten(0, 1)).reshape(n, v, -1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (N, V, D') of images or features."""
        return F.normalize(self.head(self.features(x)), dim=-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, labels = batch
        feats = self.features(x)
        if self.feature_noise:
            feats = F.normalize(feats, dim=-1) + self.feature_noise * torch.randn_like(feats)
        loss = self.loss(self.head(feats), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, labels = batch
        self._val_z.append(self(x)[:, 0].float())
        self._val_y.append(labels)

    def on_validation_epoch_end(self) -> None:
        if not self._val_z:
            return
        z, y = torch.cat(self._val_z), torch.cat(self._val_y)
        self._val_z, self._val_y = [], []
        if self.trainer.world_size > 1:
            z, y = self.all_gather(z).flatten(0, 1), self.all_gather(y).flatten(0, 1)
        z_np, y_np = z.cpu().numpy(), y.cpu().numpy()
        self.val_embeddings, self.val_labels = z_np, y_np
        if not self.label_fields and not self._noted_unlabelled and self.trainer.is_global_zero:
            self._noted_unlabelled = True
            log.info("validation: no label field (unlabelled data): retrieval metrics, kNN and the linear "
                     "probe need labels and are skipped; the loss and the embedding map are logged")
        final = self.trainer.state.fn == "validate"
        sums: dict[str, list[float]] = {}
        for f, field in enumerate(self.label_fields):
            known = y_np[:, f] >= 0
            if known.sum() < 2:
                continue
            ids = np.nonzero(known)[0]
            m = retrieval_metrics(z_np[known], y_np[known, f], z_np[known], y_np[known, f], self.k, ids, ids,
                                  linear_probe=final)
            values = {"p_at_k": m.p_at_k, "map_at_k": m.map_at_k, "r_at_k": m.r_at_k,
                      "knn_accuracy": m.knn_accuracy}
            if final and m.linear_probe_accuracy is not None and np.isfinite(m.linear_probe_accuracy):
                values["linear_probe_accuracy"] = m.linear_probe_accuracy
            if final and self.trainer.is_global_zero:
                for message in m.warnings:
                    log.warning("validation %s: %s", field, message)
            for name, value in values.items():
                sums.setdefault(name, []).append(value)
                if len(self.label_fields) > 1:
                    self.log(f"val/{field}/{name}", value, rank_zero_only=True)
        for name, values in sums.items():
            self.log(f"val/{name}", float(np.mean(values)), prog_bar=name == "p_at_k", rank_zero_only=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.head.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only the trainable weights, plus what the frozen ones are."""
        checkpoint["state_dict"] = trainable_state_dict(self, checkpoint["state_dict"])
        checkpoint["artenc_frozen"] = frozen_reference(self, self.backbone_reference)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: FBT001, FBT002
        """`nn.Module.load_state_dict` accepting a checkpoint without the frozen weights
        (`on_save_checkpoint`): those are kept from this module; every other key stays strict."""
        return super().load_state_dict(with_frozen_weights(self, state_dict), strict=strict, assign=assign)
