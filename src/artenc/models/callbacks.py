"""Training callbacks: a 2-D map of the validation embeddings, logged as a picture."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np

log = logging.getLogger(__name__)


def embedding_map_2d(z: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """(n, d) embeddings -> (n, 2) with UMAP (cosine) or PCA; UMAP falls back to PCA if absent."""
    if method not in ("umap", "pca"):
        raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
    if method == "umap" and len(z) > 15:
        try:
            import umap

            return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(z)
        except ImportError:
            log.warning("umap-learn not installed (pip install 'artenc[viz]'); using PCA for the embedding map")
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(z) if min(z.shape) >= 2 else np.zeros((len(z), 2))


class EmbeddingMap(L.Callback):
    """At the end of fitting, plot the last validation embeddings coloured by the first label
    field (one colour without labels); saved as `<log dir>/embedding_map.png` and sent to
    W&B / TensorBoard loggers. Skipped under `fast_dev_run` (a smoke test: the map costs seconds)."""

    def __init__(self, method: str = "umap", max_points: int = 2000, seed: int = 0) -> None:
        if method not in ("umap", "pca"):
            raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
        self.method, self.max_points, self.seed = method, max_points, seed

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        z, y = getattr(pl_module, "val_embeddings", None), getattr(pl_module, "val_labels", None)
        if not trainer.is_global_zero or z is None or len(z) < 2 or trainer.fast_dev_run:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rng = np.random.default_rng(self.seed)
        pick = rng.permutation(len(z))[: self.max_points]
        xy = embedding_map_2d(z[pick], self.method, self.seed)
        fig, ax = plt.subplots(figsize=(7, 6))
        colour = y[pick, 0] if y is not None and y.ndim == 2 and y.shape[1] else None
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="tab10" if colour is not None else None, s=6)
        ax.set_title(f"validation embeddings ({self.method})")
        ax.set_xticks([])
        ax.set_yticks([])
        path = Path(trainer.default_root_dir) / "embedding_map.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        for logger in trainer.loggers:
            name = type(logger).__name__
            if name == "WandbLogger":
                logger.log_image(key="val/embedding_map", images=[str(path)])
            elif name == "TensorBoardLogger":
                logger.experiment.add_figure("val/embedding_map", fig, global_step=trainer.global_step)
        plt.close(fig)
