"""Curves of the k sweep (`artenc cluster --k auto`): elbow (inertia, distortion), silhouette, gap."""

from __future__ import annotations

import os
from pathlib import Path

from artenc.viz.grids import pyplot, save_figure


def plot_k_sweep(sweep: list[dict], chosen_k: int, out_dir: str | os.PathLike,
                 method: str = "kmedoids") -> list[Path]:
    """Write elbow.png (inertia and distortion vs k) and silhouette.png (silhouette and gap);
    `method` ("kmedoids" or "kmeans") names the cost in the elbow plot's title and legend."""
    plt = pyplot()
    out_dir = Path(out_dir)
    ks = [row["k"] for row in sweep]
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    cost = "sum of squared distances" if method == "kmeans" else "sum of distances"
    ax.plot(ks, [row["inertia"] for row in sweep], "o-", ms=3, label=f"inertia ({cost})")
    ax.set_xlabel("k")
    ax.set_ylabel("inertia")
    ax2 = ax.twinx()
    ax2.plot(ks, [row["distortion"] for row in sweep], "s--", ms=2, color="tab:orange", label="distortion (mean)")
    ax2.set_ylabel("distortion")
    ax.axvline(chosen_k, color="tab:red", lw=1, label=f"chosen k={chosen_k}")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("elbow: k-means cost by k (squared Euclidean to centroids)" if method == "kmeans"
                 else "elbow: k-medoids cost by k (cosine distance)")
    written.append(save_figure(fig, out_dir / "elbow.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ks, [row["silhouette"] for row in sweep], "o-", ms=3, label="silhouette")
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette")
    ax2 = ax.twinx()
    ax2.errorbar(ks, [row["gap"] for row in sweep], yerr=[row["gap_sd"] for row in sweep], fmt="s--", ms=2,
                 color="tab:green", label="gap statistic")
    ax2.set_ylabel("gap")
    ax.axvline(chosen_k, color="tab:red", lw=1)
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    ax.set_title("silhouette and gap statistic by k")
    written.append(save_figure(fig, out_dir / "silhouette.png"))
    return written
