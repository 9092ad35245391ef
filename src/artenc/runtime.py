"""Run a backbone on uint8 image batches: torch (GPU or CPU) or ONNX Runtime (CPU fast path).

Normalisation and L2 normalisation are part of the exported graph, so workers ship
compact uint8 crops and both runtimes produce identical vectors (within 1e-4).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from artenc.atomic import atomic_path
from artenc.backbones import Backbone, create_backbone
from artenc.backbones.weights import fingerprint_module
from artenc.errors import ParameterError, UsageError
from artenc.preprocess import PreprocessConfig
from artenc.store import ModelSignature, onnx_cache_dir

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")
ONNX_OPSET = 18


class EmbeddingModule(nn.Module):
    """uint8 (N,3,H,W) -> L2-normalised float32 (N, dim): normalise, pool, normalise."""

    def __init__(self, model: nn.Module, preprocess: PreprocessConfig) -> None:
        super().__init__()
        self.model = model
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.scale.dtype) * self.scale + self.shift
        features = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return F.normalize(features.float().flatten(1), dim=1)


@dataclass
class Encoder:
    """A ready-to-run image encoder; `encode(uint8 batch) -> (N, dim)` float32 unit vectors."""

    backbone: Backbone
    signature: ModelSignature
    runtime: str
    device: str
    _module: EmbeddingModule | None = None
    _sessions: list | None = None  # ONNX Runtime sessions; a batch is split across them
    _pool: object | None = None

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.backbone.preprocess

    def encode(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected uint8 (N,3,H,W), got {batch.dtype} {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, self.signature.dim), dtype=np.float32)
        if self._sessions:
            batch = np.ascontiguousarray(batch)
            chunks = np.array_split(batch, min(len(self._sessions), len(batch)))
            if len(chunks) == 1:
                return self._sessions[0].run(None, {"images": batch})[0]
            runs = [self._pool.submit(s.run, None, {"images": c})
                    for s, c in zip(self._sessions, chunks, strict=False)]
            return np.concatenate([r.result()[0] for r in runs])
        assert self._module is not None
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.device == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            return self._module(x).cpu().numpy()


def _onnx_path(signature: ModelSignature) -> Path:
    key = json.dumps(
        {"fp": signature.fingerprint, "pre": signature.preprocess, "opset": ONNX_OPSET, "torch": torch.__version__},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in signature.model)[-60:]
    return onnx_cache_dir() / f"{safe}-{digest}.onnx"


def export_onnx(module: EmbeddingModule, size: int, path: Path) -> Path:
    """Export with a dynamic batch axis; atomic, so a crash never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


MAX_SESSIONS = 4


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _onnx_sessions(path: Path, threads: int | None) -> list:
    """`threads` given: one session with that many threads (e.g. a server running one query
    per core). Otherwise one single-threaded session per core (up to MAX_SESSIONS), each
    taking a slice of the batch: no intra-op barriers to stall when decoding workers share
    the cores (measured on 2 cores: 225 vs 201 images/s for one 2-thread session)."""
    if threads:
        return [_onnx_session(path, threads)]
    cores = os.cpu_count() or 1
    n = min(cores, MAX_SESSIONS)
    return [_onnx_session(path, max(1, cores // n)) for _ in range(n)]


def resolve_device(device: str) -> str:
    """"auto" | "cpu" | "cuda" | "cuda:K" -> "cpu" or "cuda". "cuda:K" (one process per GPU of a
    node) makes GPU K this process's current CUDA device (`torch.cuda.set_device`), which plain
    "cuda" then means. Raises ParameterError("device", ...) for anything else or a missing GPU."""
    if device.startswith("cuda:"):
        k = device.removeprefix("cuda:")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not k.isdigit() or int(k) >= count:
            raise ParameterError("device", f"{device!r}: this machine has CUDA devices cuda:0..cuda:{count - 1}"
                                 if count else f"{device!r} requested but CUDA is not available on this machine")
        torch.cuda.set_device(int(k))
        return "cuda"
    if device not in DEVICES:
        raise ParameterError("device", f"must be one of {DEVICES} or cuda:K, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "cuda requested but CUDA is not available on this machine")
    return device


def create_encoder(
    model: str = "tf_efficientnet_lite0",
    weights: str | None = None,
    *,
    device: str = "auto",
    runtime: str = "auto",
    threads: int | None = None,
    trim_borders: bool | None = None,
) -> Encoder:
    """Build backbone `model` and pick a runtime: torch on GPU, ONNX Runtime on CPU (auto).

    `trim_borders` overrides the model's preprocessing (crop letterbox bars first);
    None keeps what the model specifies (exported encoders record it).
    """
    if runtime not in RUNTIMES:
        raise ParameterError("runtime", f"must be one of {RUNTIMES}, got {runtime!r}")
    resolve_device(device)  # fail on a bad device before building the model
    backbone = create_backbone(model, weights)
    if trim_borders is not None and trim_borders != backbone.preprocess.trim_borders:
        backbone.preprocess = dataclasses.replace(backbone.preprocess, trim_borders=trim_borders)
    return encoder_from_backbone(backbone, device=device, runtime=runtime, threads=threads, weights=weights)


def encoder_from_backbone(
    backbone: Backbone,
    *,
    device: str = "auto",
    runtime: str = "auto",
    threads: int | None = None,
    weights: str | None = None,
) -> Encoder:
    """An Encoder for an already built Backbone: ONNX Runtime on CPU (export cached per
    fingerprint), torch on GPU, both with normalisation and L2 normalisation in the graph."""
    if runtime not in RUNTIMES:
        raise ParameterError("runtime", f"must be one of {RUNTIMES}, got {runtime!r}")
    device = resolve_device(device)
    if runtime == "onnx" and device == "cuda":
        raise ParameterError("runtime", "onnx runs on the CPU only; the torch runtime runs on cuda")
    module = EmbeddingModule(backbone.model, backbone.preprocess).eval()
    signature = ModelSignature(
        model=backbone.name,
        fingerprint=fingerprint_module(backbone.model),
        preprocess=backbone.preprocess.to_dict(),
        dim=backbone.dim,
        weights=str(Path(weights).resolve()) if weights else None,
    )
    if runtime == "auto":
        runtime = "torch" if device == "cuda" else "onnx"
    if runtime == "onnx":
        try:
            path = _onnx_path(signature)
            if not path.is_file():
                log.info("exporting %s to ONNX (once per model): %s", backbone.name, path)
                export_onnx(module, backbone.preprocess.size, path)
            sessions = _onnx_sessions(path, threads)
            pool = ThreadPoolExecutor(len(sessions), thread_name_prefix="artenc-onnx") if len(sessions) > 1 else None
            return Encoder(backbone, signature, "onnx", "cpu", None, sessions, pool)
        except ImportError as exc:
            log.warning("ONNX Runtime unavailable (%s); falling back to torch", exc)
    if threads:
        torch.set_num_threads(threads)
    module = module.to(device)
    if device == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return Encoder(backbone, signature, "torch", device, module, None)


def encoder_for_store(
    meta: dict, *, device: str = "auto", runtime: str = "auto", threads: int | None = None
) -> Encoder:
    """Rebuild the encoder a store was made with, so new queries land in the same space."""
    trim = bool(meta.get("preprocess", {}).get("trim_borders", False))
    encoder = create_encoder(meta["model"], meta.get("weights"), device=device, runtime=runtime, threads=threads,
                             trim_borders=trim)
    if encoder.signature.fingerprint != meta.get("fingerprint"):
        raise UsageError(
            f"the store was built with {meta['model']!r} weights {meta.get('fingerprint')}, but the "
            f"weights found now have fingerprint {encoder.signature.fingerprint}; the same weights are "
            "needed to embed queries"
        )
    return encoder
