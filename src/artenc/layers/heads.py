"""Projection heads: one generic MLP block list, thin named variants (cf. lightly heads)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Standardize(nn.Module):
    """Per-feature standardisation with running statistics (BatchNorm1d without affine,
    written as plain arithmetic so ONNX export needs no static channel size).

    Training: normalises with the batch statistics and updates the running ones.
    Eval: uses the running statistics. Input (N, D) -> (N, D).
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 1:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                unbiased = var * x.shape[0] / (x.shape[0] - 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps)


class ProjectionHead(nn.Module):
    """MLP `dims[0] -> ... -> dims[-1]`; hidden layers get BatchNorm (optional) and ReLU.

    Input (..., dims[0]) -> output (..., dims[-1]); leading dimensions (e.g. views) are
    flattened for BatchNorm. `dims` of length 1 is the identity. `in_dim`, when given,
    is prepended to `dims` (so a config can name only the layers after the backbone).
    `normalize_input` L2-normalises the input first (backbone features in artenc are
    unit vectors; the exported encoder needs the same step). `input_batch_norm` standardises
    each input feature with running statistics of the training features (`Standardize`),
    for inputs that concatenate features of different scales. `input_dropout` drops input
    features while training (a regulariser for wide inputs such as covariance statistics).
    """

    def __init__(
        self, dims: list[int], batch_norm: bool = True, dropout: float = 0.0,
        normalize_input: bool = False, in_dim: int | None = None, input_batch_norm: bool = False,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dims = ([in_dim] if in_dim is not None else []) + list(dims)
        if len(dims) < 1 or any(int(d) <= 0 for d in dims):
            raise ValueError(f"dims must be positive layer sizes, e.g. [1280, 512, 128]; got {dims}")
        for name, rate in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        self.dims = [int(d) for d in dims]
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.normalize_input = normalize_input
        self.input_batch_norm = input_batch_norm
        self.input_dropout = input_dropout
        layers: list[nn.Module] = [Standardize(self.dims[0])] if input_batch_norm else []
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        for i, (d_in, d_out) in enumerate(zip(self.dims[:-1], self.dims[1:], strict=True)):
            last = i == len(self.dims) - 2
            layers.append(nn.Linear(d_in, d_out, bias=last or not batch_norm))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.ReLU(inplace=True))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def config(self) -> dict:
        """JSON-serialisable constructor arguments (stored in exported encoders)."""
        return {"dims": self.dims, "batch_norm": self.batch_norm, "dropout": self.dropout,
                "normalize_input": self.normalize_input, "input_batch_norm": self.input_batch_norm,
                "input_dropout": self.input_dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_input:
            x = F.normalize(x, dim=-1)
        if x.ndim == 2:  # (N, D): no reshape, so ONNX export keeps static feature sizes
            return self.layers(x)
        lead = x.shape[:-1]
        return self.layers(x.reshape(-1, self.dims[0])).reshape(*lead, self.out_dim)


def simclr_head(in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> ProjectionHead:
    """SimCLR's 2-layer projection head (Chen et al., 2020)."""
    return ProjectionHead([in_dim, hidden_dim, out_dim])


def linear_head(in_dim: int, out_dim: int = 128) -> ProjectionHead:
    return ProjectionHead([in_dim, out_dim], batch_norm=False)
