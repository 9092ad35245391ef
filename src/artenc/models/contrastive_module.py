"""LightningModule: a backbone (frozen, or with its last stages trainable), a trainable
projection head and a contrastive loss (or a classifier with cross-entropy).

Batches are `(x, labels)`: x is either uint8 images (N, V, 3, H, W), which go through
the backbone, cached backbone features (N, V, D) float, or, when the last stages train,
cached activations at their input (N, V, M) float. labels: (N, F) int64.
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
from artenc.layers.stages import BatchNormPolicy, PartlyTrainableBackbone
from artenc.models.checkpointing import frozen_reference, trainable_state_dict, with_frozen_weights
from artenc.models.logged_metrics import CLASSIFIER_ACCURACY, RETRIEVAL_METRICS
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

    Fine-tuning: `trainable` > 0 trains the last `trainable` stages of the backbone too
    (`artenc.layers.stages.PartlyTrainableBackbone`, BatchNorm policy `bn`), with learning rate
    `backbone_lr` (None: a tenth of the optimizer's); batches then hold uint8 images or cached
    packed activations (N, V, M) (`artenc.data.feature_cache.ActivationEncoder`).
    `head_epochs` > 0: the first `head_epochs` epochs train the head alone (the stages get no
    gradient), then the stages join it: linear probing then fine-tuning (Kumar et al., "Fine-Tuning
    can Distort Pretrained Features and Underperform Out-of-Distribution", ICLR 2022), so the
    stages start training under a head that already fits their pretrained features. In those
    epochs batches may hold the backbone features (N, V, D) themselves (the data module's
    `head_train_set` in cache mode); images or activations go through the backbone without
    gradient.

    Classifier: a loss with `uses_classifier` (`artenc.losses.CrossEntropyLoss`) gets logits
    `scale * classifier(normalize(head(x)))` of a linear layer over the classes of the first label
    field, built in `setup` from the datamodule's `classes`; validation adds
    `val/classifier_accuracy`.
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, loss: nn.Module, optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None, label_fields: Sequence[str] = ("label",), k: int = 10,
        feature_noise: float = 0.0, trainable: int = 0, backbone_lr: float | None = None,
        bn: BatchNormPolicy = "frozen", head_epochs: int = 0,
    ) -> None:
        super().__init__()
        if feature_noise < 0:
            raise ValueError(f"feature_noise must be >= 0, got {feature_noise}")
        if trainable < 0:
            raise ValueError(f"trainable must be >= 0 (0: frozen backbone), got {trainable}")
        if head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {head_epochs}")
        if head_epochs and not trainable:
            raise ValueError("head_epochs needs trainable stages (trainable > 0): with a frozen backbone "
                             "every epoch trains the head alone")
        self.trainable, self.backbone_lr, self.head_epochs = trainable, backbone_lr, head_epochs
        if trainable:
            self.backbone = PartlyTrainableBackbone(backbone, trainable, bn)
        else:
            self.backbone = backbone if isinstance(backbone, FrozenBackbone) else FrozenBackbone(backbone)
        self.classifier: nn.Linear | None = None
        self.classes: list[str] = []
        self._val_logits: list[torch.Tensor] = []
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
        """(N, V, 3, H, W) uint8 images, (N, V, D) cached features or, when stages train,
        (N, V, M) cached activations -> (N, V, D) backbone features."""
        if x.dtype == torch.uint8 or self.trainable:
            n, v = x.shape[:2]
            return self.backbone(x.flatten(0, 1)).reshape(n, v, -1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (N, V, D') of images or features."""
        return F.normalize(self.head(self.features(x)), dim=-1)

    def in_head_phase(self) -> bool:
        """Whether this is one of the first `head_epochs` epochs (the head trains alone)."""
        return bool(self.head_epochs) and self.current_epoch < self.head_epochs

    def training_features(self, x: torch.Tensor) -> torch.Tensor:
        """`features(x)` for a training step; in the head-only epochs without gradient to the
        stages (and in eval mode), and batches of backbone features (N, V, D) used as they are."""
        if not self.in_head_phase():
            return self.features(x)
        if x.dtype != torch.uint8 and x.shape[-1] == self.backbone.staged.dim:
            return x.float()
        self.backbone.train(False)
        try:
            with torch.no_grad():
                return self.features(x)
        finally:
            self.backbone.train(True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, labels = batch
        feats = self.training_features(x)
        if self.feature_noise:
            feats = F.normalize(feats, dim=-1) + self.feature_noise * torch.randn_like(feats)
        z = self.head(feats)
        loss = self.loss(self.logits(z) if self.classifier is not None else z, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, labels = batch
        z = self(x)[:, 0].float()
        self._val_z.append(z)
        self._val_y.append(labels)
        if self.classifier is not None:
            self._val_logits.append(self.logits(z))

    def on_validation_epoch_end(self) -> None:
        if not self._val_z:
            return
        z, y = torch.cat(self._val_z), torch.cat(self._val_y)
        self._val_z, self._val_y = [], []
        self._log_classifier_accuracy(y)
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
            values = {name: getattr(m, name) for name in RETRIEVAL_METRICS}
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

    # ----- classifier (loss=ce) --------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Build the classifier over the first label field's classes when the loss uses one."""
        if not getattr(self.loss, "uses_classifier", False) or self.classifier is not None:
            return
        if not self.label_fields:
            raise ValueError("the classifier loss needs a label field (its classes): label_fields is empty")
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        classes = getattr(datamodule, "classes", {}).get(self.label_fields[0])
        if not classes:
            raise ValueError(f"the classifier needs the classes of {self.label_fields[0]!r} from the datamodule")
        self.build_classifier(classes)

    def build_classifier(self, classes: Sequence[str]) -> None:
        """A linear layer from the unit-norm embedding to one logit per class."""
        self.classes = [str(c) for c in classes]
        self.classifier = nn.Linear(int(self.head.out_dim), len(self.classes))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """(..., D') head outputs -> (..., C) logits, `loss.scale * classifier(normalize(z))`."""
        return self.classifier(F.normalize(z, dim=-1)) * float(self.loss.scale)

    def exported_classifier(self) -> dict | None:
        """The classifier for export: field, classes, and the weight (C, D') / bias (C,) with the
        loss's scale folded in, so probabilities are softmax(unit embedding @ weight.T + bias)."""
        if self.classifier is None:
            return None
        scale = float(self.loss.scale)
        return {"field": self.label_fields[0], "classes": list(self.classes),
                "weight": (self.classifier.weight.detach().cpu() * scale).contiguous(),
                "bias": (self.classifier.bias.detach().cpu() * scale).contiguous()}

    def _log_classifier_accuracy(self, y: torch.Tensor) -> None:
        if not self._val_logits:
            return
        logits, self._val_logits = torch.cat(self._val_logits), []
        if self.trainer.world_size > 1:
            logits = self.all_gather(logits).flatten(0, 1)
            y = self.all_gather(y).flatten(0, 1)
        known = y[:, 0] >= 0
        if known.any():
            accuracy = (logits.argmax(1)[known] == y[known, 0]).float().mean()
            self.log(CLASSIFIER_ACCURACY, float(accuracy), rank_zero_only=True)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        classes = checkpoint.get("artenc_classes")
        if classes and self.classifier is None:
            self.build_classifier(classes)

    # ----- optimisation ------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups: the head (and classifier) at the optimizer's
        learning rate; the trainable backbone stages at `backbone_lr` (None: a tenth of it)."""
        own = [p for p in self.head.parameters() if p.requires_grad]
        if self.classifier is not None:
            own += list(self.classifier.parameters())
        groups = [{"params": own}]
        if self.trainable:
            lr = self.backbone_lr
            if lr is None:
                lr = 0.1 * float(getattr(self.optimizer_factory, "keywords", {}).get("lr", 1e-3))
            groups.append({"params": self.backbone.trainable_parameters(), "lr": float(lr)})
        return groups

    def configure_optimizers(self):
        groups = self.parameter_groups()
        total = int(self.trainer.estimated_stepping_batches)
        if self.head_epochs and len(groups) > 1:  # the stages' schedule starts after the head-only epochs
            groups[1]["start_step"] = total * self.head_epochs // max(1, int(self.trainer.max_epochs or 1))
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only the trainable weights, plus what the frozen ones are, the classifier's
        class names (`on_load_checkpoint` rebuilds the classifier from them), the loss class
        and the number of trainable stages."""
        checkpoint["state_dict"] = trainable_state_dict(self, checkpoint["state_dict"])
        checkpoint["artenc_frozen"] = frozen_reference(self, self.backbone_reference)
        checkpoint["artenc_classes"] = list(self.classes)
        checkpoint["artenc_loss"] = type(self.loss).__name__  # checked on resume (training.check_resume_matches)
        checkpoint["artenc_trainable"] = int(self.trainable)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: FBT001, FBT002
        """`nn.Module.load_state_dict` accepting a checkpoint without the frozen weights
        (`on_save_checkpoint`): those are kept from this module; every other key stays strict."""
        return super().load_state_dict(with_frozen_weights(self, state_dict), strict=strict, assign=assign)
