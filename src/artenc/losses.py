"""Contrastive losses as small modules with one interface: `loss(z, labels) -> scalar`.

`z` is (N, V, D): V embedded views of each of N images (V = 1 when there is one view).
`labels` is (N, F) int64: F label fields, -1 where a label is missing (a missing label
never matches). Views of the same image are always positives. NT-Xent ignores labels.

Embeddings are L2-normalised inside every loss, so callers may pass raw head outputs.
Under DDP, `gather=True` all-gathers embeddings (with gradients) before the loss, so
negatives come from every process (cf. open_clip `loss.py`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

Match = Literal["all", "any"]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every DDP process along dim 0, keeping gradients for the local part.

    Identity when torch.distributed is not initialised or has one process.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    # importable only on torch builds with distributed support
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def _check_z(z: torch.Tensor, labels: torch.Tensor | None) -> None:
    if z.ndim != 3:
        raise ValueError(f"z must be (N, V, D) embeddings, got shape {tuple(z.shape)}")
    if labels is not None and (labels.ndim != 2 or labels.shape[0] != z.shape[0]):
        raise ValueError(f"labels must be (N, F) with N={z.shape[0]}, got shape {tuple(labels.shape)}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (typical: 0.05-0.5), got {temperature}")


def label_match(labels: torch.Tensor, match: Match) -> torch.Tensor:
    """(N, F) int labels -> (N, N) bool: rows i, j share all (or any) of the F labels.

    A label of -1 (missing) never matches anything. With no field (F = 0, an unlabelled
    folder) nothing matches, so positives are only the views of the same image (SimCLR's); a
    vacuous "all of no field agree" would make every pair a positive and pull all embeddings
    together.
    """
    if labels.shape[1] == 0:
        return torch.zeros((labels.shape[0], labels.shape[0]), dtype=torch.bool, device=labels.device)
    known = labels >= 0
    equal = (labels[:, None, :] == labels[None, :, :]) & known[:, None, :] & known[None, :, :]
    return equal.all(dim=2) if match == "all" else equal.any(dim=2)


def label_mismatch(labels: torch.Tensor) -> torch.Tensor:
    """(N, F) int labels -> (N, N) bool: rows i, j share none of the F labels."""
    known = labels >= 0
    equal = (labels[:, None, :] == labels[None, :, :]) & known[:, None, :] & known[None, :, :]
    return ~equal.any(dim=2)


class NTXentLoss(nn.Module):
    """NT-Xent (normalised temperature-scaled cross entropy) of SimCLR.

    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
    ICML 2020. Input z: (N, 2, D), two augmented views per image; labels are ignored.
    Each of the 2N views must pick its partner among the 2N - 1 others.
    """

    required_views = 2  # data.views the training config must give (checked before a run)

    def __init__(self, temperature: float = 0.1, gather: bool = False) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature
        self.gather = gather

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_z(z, None)
        if z.shape[1] != 2:
            raise ValueError(f"NT-Xent needs exactly 2 views per image, got {z.shape[1]}")
        z = F.normalize(z, dim=-1)
        if self.gather:
            z = gather_with_grad(z)
        n = z.shape[0]
        flat = torch.cat([z[:, 0], z[:, 1]], dim=0)  # (2N, D): view a of all, then view b
        logits = flat @ flat.T / self.temperature
        logits.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, target)


class SupConLoss(nn.Module):
    """Supervised contrastive loss (the L_out variant).

    Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020. Input z: (N, V, D),
    labels: (N, F). Positives of an anchor: its other views, and every view of an image
    whose labels match (`match="all"`: every field equal; `"any"`: at least one equal).
    With labels=None this is SimCLR's NT-Xent generalised to V views. Anchors with no
    positive are left out of the mean.
    """

    def __init__(self, temperature: float = 0.1, match: Match = "all", gather: bool = False) -> None:
        super().__init__()
        _check_temperature(temperature)
        if match not in ("all", "any"):
            raise ValueError(f"match must be 'all' or 'any' (which label fields must agree), got {match!r}")
        self.temperature = temperature
        self.match = match
        self.gather = gather

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_z(z, labels)
        z = F.normalize(z, dim=-1)
        ids = torch.arange(z.shape[0], device=z.device) + _rank() * z.shape[0]  # unique image ids
        if self.gather:  # all_gather needs equal batch sizes on every process (drop_last)
            z, ids = gather_with_grad(z), gather_with_grad(ids)
            labels = gather_with_grad(labels) if labels is not None else None
        n, v, _ = z.shape
        same = ids[:, None] == ids[None, :]
        if labels is not None:
            same = same | label_match(labels, self.match)
        flat = z.reshape(n * v, -1)  # image-major: row = i * V + view
        pos = same.repeat_interleave(v, dim=0).repeat_interleave(v, dim=1)
        self_mask = torch.eye(n * v, dtype=torch.bool, device=z.device)
        pos = pos & ~self_mask
        logits = flat @ flat.T / self.temperature
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        n_pos = pos.sum(dim=1)
        has_pos = n_pos > 0
        if not has_pos.any():
            return z.sum() * 0.0  # no positive pair in the batch: zero loss, graph kept
        mean_log_prob = log_prob.masked_fill(~pos, 0.0).sum(dim=1)[has_pos] / n_pos[has_pos]
        return -mean_log_prob.mean()


class MarginPairLoss(nn.Module):
    """Contrastive margin loss on pairs.

    Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping",
    CVPR 2006. Input z: (N, V, D), labels: (N, F). Over all pairs of the N*V views, with
    d the Euclidean distance of the normalised embeddings: a positive pair (same image,
    or every label field equal) costs d^2, a negative pair (no label field equal) costs
    max(0, margin - d)^2; pairs that agree on some but not all fields are ignored.
    The loss is the mean over the pairs that count.
    """

    def __init__(self, margin: float = 1.0, gather: bool = False) -> None:
        super().__init__()
        if not 0 < margin <= 2:
            raise ValueError(f"margin must be in (0, 2] (distances of unit vectors are <= 2), got {margin}")
        self.margin = margin
        self.gather = gather

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_z(z, labels)
        if labels is None:
            raise ValueError("MarginPairLoss needs labels (N, F)")
        z = F.normalize(z, dim=-1)
        if self.gather:
            z, labels = gather_with_grad(z), gather_with_grad(labels)
        n, v, _ = z.shape
        flat = z.reshape(n * v, -1)
        same_image = torch.eye(n, dtype=torch.bool, device=z.device)
        pos = (same_image | label_match(labels, "all")).repeat_interleave(v, 0).repeat_interleave(v, 1)
        neg = (label_mismatch(labels) & ~same_image).repeat_interleave(v, 0).repeat_interleave(v, 1)
        upper = torch.ones_like(pos).triu(diagonal=1)
        pos, neg = pos & upper, neg & upper
        d2 = (2.0 - 2.0 * flat @ flat.T).clamp_min(0.0)
        d = (d2 + 1e-12).sqrt()
        cost = torch.where(pos, d2, F.relu(self.margin - d) ** 2)
        counted = pos | neg
        if not counted.any():
            return z.sum() * 0.0
        return cost[counted].mean()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class CrossEntropyLoss(nn.Module):
    """Cross-entropy of a linear classifier over the first label field (transfer learning).

    Input: logits (N, V, C) — the LightningModule computes `scale * classifier(normalize(z))`
    for the V views, a cosine-style classifier (Wang et al., "NormFace", ACM MM 2017) — and
    labels (N, F) whose column 0 holds class indices (-1: missing, ignored). `label_smoothing`
    in [0, 1) mixes the target with the uniform distribution (Szegedy et al., "Rethinking the
    Inception Architecture", CVPR 2016). `scale` > 0 multiplies the logits of unit embeddings
    (their dot products with the class weights are otherwise small at the start).
    """

    uses_classifier = True

    def __init__(self, label_smoothing: float = 0.0, scale: float = 10.0) -> None:
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1) (typical: 0.1), got {label_smoothing}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (typical: 10-30), got {scale}")
        self.label_smoothing, self.scale = float(label_smoothing), float(scale)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_z(logits, labels)
        n, v, c = logits.shape
        target = labels[:, 0].repeat_interleave(v)
        if not (target >= 0).any():
            return logits.sum() * 0.0  # no labelled row in the batch: zero loss, graph kept
        return F.cross_entropy(logits.reshape(n * v, c), target, ignore_index=-1,
                               label_smoothing=self.label_smoothing)
