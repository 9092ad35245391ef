"""Run a backbone on uint8 image batches: torch (GPU or CPU) or ONNX Runtime (CPU fast path).

Normalisation and L2 normalisation are part of the exported graph, so workers ship
compact uint8 crops and both runtimes produce identical vectors (within 1e-4).
`runtime="onnx-int8"` runs an INT8 copy of the ONNX export (`quantize_onnx`: ONNX Runtime's
static quantisation), cached beside it; its vectors are close to float32 ones (WikiArt: mean
cosine 0.995, lowest 0.985; style P@10 within 0.01) and its stores record `quantization="int8"` (`store.ModelSignature`), so the two never mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
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
from artenc.defaults import RUNTIMES
from artenc.errors import ParameterError, UsageError
from artenc.preprocess import PreprocessConfig
from artenc.store import ModelSignature, onnx_cache_dir

log = logging.getLogger(__name__)
ONNX_RUNTIMES = ("onnx", "onnx-int8")  # CPU only
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


# INT8 recipe (`quantize_onnx`); change the tag whenever the recipe changes (it keys the cache)
INT8_RECIPE = "qdq-conv-minmax-skip-first-quarter-v1"
INT8_SKIP_SHARE = 0.25  # the first quarter of the Conv nodes (graph order) stays float32
CALIBRATION_IMAGES = 64


def _int8_path(signature: ModelSignature) -> Path:
    """The INT8 copy's cache file, beside the float32 export (`_onnx_path`), keyed by the
    recipe and the ONNX Runtime version whose quantiser wrote it."""
    import onnxruntime as ort

    fp32 = _onnx_path(signature)
    digest = hashlib.sha256(f"{INT8_RECIPE}|{ort.__version__}".encode()).hexdigest()[:12]
    return fp32.with_name(f"{fp32.stem}-int8-{digest}.onnx")


def calibration_images(size: int, n: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Deterministic synthetic calibration images, uint8 (n, 3, size, size): smooth colour
    waves of random frequency, phase and contrast plus pixel noise of random strength, so
    every user of a model gets the same INT8 copy, whatever their images (measured on
    WikiArt crops: the same cosine to float32 as calibrating on the real images)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        f, phase = rng.uniform(1, 12, 6), rng.uniform(0, 2 * np.pi, 3)
        amp, noise = rng.uniform(20, 120), rng.uniform(2, 30)
        wave = np.stack([127 + amp * np.sin(2 * np.pi * (xx * f[c] + yy * f[c + 3]) + phase[c]) for c in range(3)])
        out[i] = np.clip(wave + rng.normal(0, noise, wave.shape), 0, 255).astype(np.uint8)
    return out


def quantize_onnx(fp32: Path, path: Path, size: int) -> Path:
    """Write an INT8 copy of the float32 ONNX encoder `fp32` to `path` (atomic) and return it.

    ONNX Runtime's own tools (`onnxruntime.quantization`): `quant_pre_process` (graph
    optimisation, without symbolic shape inference, which the exported TF-"same" padding
    defeats), then `quantize_static` in QDQ format with per-channel int8 weights and uint8
    activations, calibrated (MinMax) on `calibration_images(size)`. Only Conv nodes are
    quantised, and the first quarter of them (`INT8_SKIP_SHARE`: the stem and the early
    high-resolution blocks, whose depthwise convolutions lose most to 8 bits) stay float32:
    measured with tf_efficientnet_lite0 on 2,100 WikiArt dev crops (scripts/bench_embed.py),
    cosine to float32 mean 0.995, lowest 0.985, style P@10 0.347 against 0.345, where
    quantising every Conv gives a mean cosine of 0.87; the forward pass takes about a fifth less
    CPU. Raises ImportError without onnxruntime.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Batches(CalibrationDataReader):
        def __init__(self, images: np.ndarray) -> None:
            self._it = iter([{"images": images[i : i + 8]} for i in range(0, len(images), 8)])

        def get_next(self):
            return next(self._it, None)

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="artenc-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node if n.op_type == "Conv"]
        skip = convs[: math.ceil(len(convs) * INT8_SKIP_SHARE)]
        with atomic_path(path) as out:
            quantize_static(str(pre), str(out), _Batches(calibration_images(size)), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=skip,
                            calibrate_method=CalibrationMethod.MinMax)
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
    if runtime in ONNX_RUNTIMES and device == "cuda":
        raise ParameterError("runtime", f"{runtime} runs on the CPU only; the torch runtime runs on cuda")
    module = EmbeddingModule(backbone.model, backbone.preprocess).eval()
    signature = ModelSignature(
        model=backbone.name,
        fingerprint=fingerprint_module(backbone.model),
        preprocess=backbone.preprocess.to_dict(),
        dim=backbone.dim,
        weights=str(Path(weights).resolve()) if weights else None,
        quantization="int8" if runtime == "onnx-int8" else None,
    )
    if runtime == "auto":
        runtime = "torch" if device == "cuda" else "onnx"
    if runtime in ONNX_RUNTIMES:
        try:
            path = _onnx_path(signature)
            if not path.is_file():
                log.info("exporting %s to ONNX (once per model): %s", backbone.name, path)
                export_onnx(module, backbone.preprocess.size, path)
            if runtime == "onnx-int8":
                fp32, path = path, _int8_path(signature)
                if not path.is_file():
                    log.info("quantising %s to INT8 (once per model): %s", backbone.name, path)
                    quantize_onnx(fp32, path, backbone.preprocess.size)
            sessions = _onnx_sessions(path, threads)
            pool = ThreadPoolExecutor(len(sessions), thread_name_prefix="artenc-onnx") if len(sessions) > 1 else None
            return Encoder(backbone, signature, runtime, "cpu", None, sessions, pool)
        except ImportError as exc:
            if runtime == "onnx-int8":
                raise ParameterError("runtime", f"onnx-int8 needs onnxruntime ({exc})") from exc
            log.warning("ONNX Runtime unavailable (%s); falling back to torch", exc)
    if threads:
        torch.set_num_threads(threads)
    module = module.to(device)
    if device == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return Encoder(backbone, signature, "torch", device, module, None)


def runtime_for_store(meta: dict, runtime: str = "auto", device: str = "auto",
                      where: str = "the store") -> tuple[str, str]:
    """The (runtime, device) whose vectors fit a store with meta.json `meta`.

    A store holds float32 or int8-quantised vectors (meta `quantization` "int8", written by
    `runtime="onnx-int8"`), never both. `runtime` "auto" adopts an int8 store's onnx-int8
    (on the CPU when `device` is "auto"), as `dtype=None` adopts the store's dtype; otherwise
    the arguments come back unchanged. Raises ParameterError("runtime") when an explicit
    runtime does not fit (another runtime for an int8 store, onnx-int8 for a float32 one);
    `where` names the store in that message.
    """
    int8 = meta.get("quantization") == "int8"
    if int8 and runtime == "auto":
        return "onnx-int8", "cpu" if device == "auto" else device
    if int8 and runtime != "onnx-int8":
        raise ParameterError("runtime", f"must be onnx-int8 for {where}: it holds int8-quantised vectors "
                                        f"(or use another store)")
    if not int8 and runtime == "onnx-int8":
        raise ParameterError("runtime", f"onnx-int8 does not fit {where}: it holds float32 vectors "
                                        f"(leave the runtime at auto, or use another store)")
    return runtime, device


def encoder_for_store(
    meta: dict, *, device: str = "auto", runtime: str = "auto", threads: int | None = None
) -> Encoder:
    """Rebuild the encoder a store was made with, so new queries land in the same space.

    An INT8 store (meta `quantization` "int8") gets the onnx-int8 runtime on the CPU when
    `runtime` is "auto"; another runtime for it, or onnx-int8 for a float32 store, raises
    ParameterError("runtime").
    """
    trim = bool(meta.get("preprocess", {}).get("trim_borders", False))
    runtime, device = runtime_for_store(meta, runtime, device)
    encoder = create_encoder(meta["model"], meta.get("weights"), device=device, runtime=runtime, threads=threads,
                             trim_borders=trim)
    if encoder.signature.fingerprint != meta.get("fingerprint"):
        raise UsageError(
            f"the store was built with {meta['model']!r} weights {meta.get('fingerprint')}, but the "
            f"weights found now have fingerprint {encoder.signature.fingerprint}; the same weights are "
            "needed to embed queries"
        )
    return encoder
