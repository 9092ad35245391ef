"""The names of the metrics `ContrastiveModule` logs during `fit`: the one list that the module
logs from and that `artenc.training.validate_config` checks callbacks' `monitor` against.

Light (no torch, no Lightning): the config check runs before any heavy import.
"""

from __future__ import annotations

from collections.abc import Sequence

RETRIEVAL_METRICS = ("p_at_k", "map_at_k", "r_at_k", "knn_accuracy")
"""Retrieval metrics logged at each validation per label field (`val/<field>/<name>` with more
than one field) and as their mean over fields (`val/<name>`); leave-one-out in the validation set."""

CLASSIFIER_ACCURACY = "val/classifier_accuracy"
"""Top-1 accuracy of the classifier (a loss with `uses_classifier`, e.g. loss=ce) on the first field."""

TRAIN_LOSS = ("train/loss", "train/loss_step", "train/loss_epoch")
"""The training loss: Lightning logs it per step and as the epoch mean (`train/loss_epoch`)."""


def logged_metrics(label_fields: Sequence[str], classifier: bool = False) -> list[str]:
    """Every metric name a fit logs, for a run with `label_fields` (empty: an unlabelled
    folder, no label-based metric) and, with `classifier`, a classifier loss.

    Returns:
        names in logging order, e.g. ``["train/loss", "train/loss_step", "train/loss_epoch",
        "val/p_at_k", ...]``. `val/linear_probe_accuracy` is left out: only the final
        `trainer.validate` logs it, never during fit (so a callback cannot monitor it).
    """
    names = list(TRAIN_LOSS)
    fields = list(label_fields)
    if fields:
        names += [f"val/{name}" for name in RETRIEVAL_METRICS]
        if len(fields) > 1:
            names += [f"val/{field}/{name}" for field in fields for name in RETRIEVAL_METRICS]
        if classifier:
            names.append(CLASSIFIER_ACCURACY)
    return names
