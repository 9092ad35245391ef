"""Run a backbone on uint8 image batches: torch (GPU or CPU) or ONNX Runtime (CPU fast path).

Normalisation and L2 normalisation are part of the exported graph, so workers ship
compact uint8 crops and both runtimes produce identical vectors (within 1e-4).
`runtime="onnx-int8"` runs an INT8 copy of the ONNX export (`quantize_onnx`: ONNX Runtime's
static quantisation, recipe `INT8_RECIPE`), cached beside it; its vectors are close to float32
ones (WikiArt dev: every one of 4,200 crops within cosine 0.99, mean 0.998; style P@10 within
0.01; scripts/bench_embed.py) and its stores record `quantization="int8"` and the recipe
(`store.ModelSignature`), so float32 vectors, or int8 ones of another recipe, never mix.
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
from artenc.errors import ParameterError, StoreError, UsageError
from artenc.preprocess import PreprocessConfig
from artenc.store import FIRST_INT8_RECIPE, ModelSignature, onnx_cache_dir, quantization_recipe

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
                return _run_in_steps(self._sessions[0], batch)
            runs = [self._pool.submit(_run_in_steps, s, c) for s, c in zip(self._sessions, chunks, strict=False)]
            return np.concatenate([r.result() for r in runs])
        assert self._module is not None
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.device == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            return self._module(x).cpu().numpy()


# images per ONNX Runtime call: a session's activations for 8 images stay near the CPU caches.
# Measured (tf_efficientnet_lite0, 2 sessions of 1 thread, 64 images a batch): 7.7 ms of CPU per
# image in steps of 8 against 9.4 ms in steps of 32, and a first call of 0.1 s more CPU instead
# of 0.9 s (the memory ONNX Runtime plans per input shape, touched once)
ONNX_STEP = 8


def _run_in_steps(session, images: np.ndarray) -> np.ndarray:
    """`session` (ONNX Runtime, input "images") run on `images` ONNX_STEP at a time."""
    if len(images) <= ONNX_STEP:
        return session.run(None, {"images": images})[0]
    return np.concatenate([session.run(None, {"images": images[i : i + ONNX_STEP]})[0]
                           for i in range(0, len(images), ONNX_STEP)])


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


@dataclass(frozen=True)
class Int8Recipe:
    """How `quantize_onnx` makes the INT8 copy (ONNX Runtime static quantisation, QDQ format,
    int8 weights per output channel, uint8 activations; only Conv nodes are quantised).

    skip_share: the first share of the Conv nodes (graph order: the stem and the early,
        high-resolution blocks) kept float32.
    skip_depthwise: keep every depthwise Conv (group > 1) float32.
    skip_last: keep the last this many Conv nodes (the head conv feeding the pooled vector) float32.
    op_types: the node types quantised. With "Clip" too (timm's ReLU6), each Conv's output is
        quantised over its activation's range ([0, 6] at most) instead of the wider range of the
        values before it (ONNX Runtime's `adjust_tensor_ranges` moves a Clip's range onto its
        input only when the Clip itself is quantised): 8 bits over 0..6 rather than, say, -40..30.
    skip_matching: keep every Conv whose node name contains one of these strings float32 (e.g.
        "conv_pwl": timm's linear projections, which feed the residual sums).
    calibrate: ONNX Runtime's calibration method name ("MinMax", "Percentile", "Entropy").
    moving_average: MinMax ranges as the moving average of each calibration batch's extremes
        (ONNX Runtime's `CalibMovingAverage`) rather than the extremes over all of them.
    images, calibration: how many synthetic calibration images, of which kind (`calibration_images`).
    version: names the recipe in the cache file (`_int8_path`) and in a store's meta.json
        (`ModelSignature.quantization_recipe`): vectors of two recipes never share a store.
    """

    skip_share: float = 0.25
    skip_depthwise: bool = False
    skip_last: int = 0
    skip_matching: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("Conv",)
    calibrate: str = "MinMax"
    moving_average: bool = False
    images: int = 64
    calibration: str = "waves"
    version: str = FIRST_INT8_RECIPE

    def excluded(self, model) -> list[str]:
        """Names of the nodes of ONNX `model` (an onnx.ModelProto) this recipe keeps float32: the
        Conv nodes it skips and the nodes reading their outputs."""
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        keep = set(n.name for n in convs[: math.ceil(len(convs) * self.skip_share)])
        keep |= {n.name for n in convs[len(convs) - self.skip_last:]} if self.skip_last else set()
        keep |= {n.name for n in convs if any(part in n.name for part in self.skip_matching)}
        if self.skip_depthwise:
            keep |= {n.name for n in convs
                     if any(a.name == "group" and a.i > 1 for a in n.attribute)}
        # the activation right after a float32 Conv stays float32 too (no Q/DQ pair between them)
        outputs = {o for n in convs if n.name in keep for o in n.output}
        return [n.name for n in convs if n.name in keep] + [
            n.name for n in model.graph.node if n.op_type != "Conv" and n.input and n.input[0] in outputs]


# the recipe `runtime="onnx-int8"` uses; `Int8Recipe()` is the first one (store.FIRST_INT8_RECIPE).
# scripts/bench_int8_recipes.py on all 4,200 WikiArt dev crops, cosine to float32 min / mean,
# forward per CPU s (float32 ~120): first recipe 0.9846 / 0.9951 (2,100 crops), ~157; Conv+Clip,
# 256 scenes, first quarter float32: 0.9857 / 0.9973, 177.5; first third: 0.9917 / 0.9976,
# 170.8; first half (this one): 0.9926 / 0.9978, 173.7
INT8_RECIPE = Int8Recipe(op_types=("Conv", "Clip"), calibration="scenes", images=256, skip_share=0.5,
                         version="qdq-conv-clip-scenes256-skip-first-half-v2")


def _int8_path(signature: ModelSignature, recipe: Int8Recipe = INT8_RECIPE) -> Path:
    """The INT8 copy's cache file, beside the float32 export (`_onnx_path`), keyed by the
    whole recipe and the ONNX Runtime version whose quantiser wrote it."""
    import onnxruntime as ort

    fp32 = _onnx_path(signature)
    key = json.dumps({**dataclasses.asdict(recipe), "ort": ort.__version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return fp32.with_name(f"{fp32.stem}-int8-{digest}.onnx")


def calibration_images(size: int, n: int = INT8_RECIPE.images, seed: int = 0, kind: str = "waves") -> np.ndarray:
    """Deterministic synthetic calibration images, uint8 (n, 3, size, size), so every user of a
    model gets the same INT8 copy, whatever their images.

    kind "waves": smooth colour waves of random frequency, phase and contrast plus pixel noise of
    random strength. kind "scenes": the same waves, every second image with what real scans have
    and waves lack (the activations' extremes, which MinMax calibration must see): uniform bars
    along two opposite edges (letterboxing, mats: black, white or grey), solid rectangles with
    hard edges, and an overall gain from dark to bright. Raises ParameterError for another kind.
    """
    if kind not in ("waves", "scenes"):
        raise ParameterError("kind", f"must be 'waves' or 'scenes', got {kind!r}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        f, phase = rng.uniform(1, 12, 6), rng.uniform(0, 2 * np.pi, 3)
        amp, noise = rng.uniform(20, 120), rng.uniform(2, 30)
        wave = np.stack([127 + amp * np.sin(2 * np.pi * (xx * f[c] + yy * f[c + 3]) + phase[c]) for c in range(3)])
        img = wave + rng.normal(0, noise, wave.shape)
        if kind == "scenes" and i % 2:
            for _ in range(rng.integers(1, 6)):  # solid rectangles: hard edges, flat areas
                x0, y0 = rng.integers(0, size, 2)
                w, h = rng.integers(size // 16, size // 2, 2)
                img[:, y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, (3, 1, 1))
            img = img * rng.uniform(0.3, 1.3)  # dark to bright
            bar = int(rng.integers(0, size // 4))
            if bar:  # bars along two opposite edges, of one grey level
                level = rng.choice([0.0, 255.0, rng.uniform(0, 255)])
                if rng.random() < 0.5:
                    img[:, :bar], img[:, size - bar :] = level, level
                else:
                    img[:, :, :bar], img[:, :, size - bar :] = level, level
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def quantize_onnx(fp32: Path, path: Path, size: int, recipe: Int8Recipe = INT8_RECIPE) -> Path:
    """Write an INT8 copy of the float32 ONNX encoder `fp32` to `path` (atomic) and return it.

    ONNX Runtime's own tools (`onnxruntime.quantization`): `quant_pre_process` (graph
    optimisation, without symbolic shape inference, which the exported TF-"same" padding
    defeats), then `quantize_static` in QDQ format with per-channel int8 weights and uint8
    activations, calibrated on `calibration_images` (`recipe.images`, `recipe.calibration`) with
    `recipe.calibrate`; the nodes `recipe.excluded` names stay float32 (see `Int8Recipe`).
    Measured with tf_efficientnet_lite0 on WikiArt dev crops (scripts/bench_int8_recipes.py):
    quantising every Conv gives a mean cosine to float32 of 0.87 (Conv outputs quantised over
    their pre-ReLU6 range: 0.41 at worst); quantising the Clips too, keeping the first half of
    the Convs float32 and calibrating on 256 "scenes" gives 0.998, 0.993 at worst on all 4,200 dev
    crops (first quarter float32: one crop at 0.986; 64 "waves": 0.983 at worst on 2,100; Entropy
    or Percentile calibration: no better than MinMax; every depthwise Conv float32: no faster
    than float32), with about 1.45x the float32 forward rate per CPU second. Raises ImportError
    without onnxruntime.
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
        skip = recipe.excluded(onnx.load(str(pre), load_external_data=False))
        with atomic_path(path) as out:
            quantize_static(str(pre), str(out), _Batches(calibration_images(size, recipe.images, kind=recipe.calibration)),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=list(recipe.op_types), nodes_to_exclude=skip,
                            calibrate_method=CalibrationMethod[recipe.calibrate],
                            extra_options={"CalibMovingAverage": recipe.moving_average})
    return path


MAX_SESSIONS = 4


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # no spin-waiting: a session of several threads spins them between operators by default,
    # CPU that decoding workers and other processes then lack (measured on 2 busy cores, one
    # session of 2 threads: 13.5 -> 8.1 ms CPU and 21 -> 12.5 ms wall per image; sessions of one
    # thread, the default here, have no pool to spin: unchanged)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
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
        quantization_recipe=INT8_RECIPE.version if runtime == "onnx-int8" else None,
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
    `where` names the store in that message. Raises StoreError for an int8 store of another
    quantisation recipe (`store.quantization_recipe`) than
    `INT8_RECIPE`: its vectors would not be comparable with new ones.
    """
    int8 = meta.get("quantization") == "int8"
    if int8 and quantization_recipe(meta) != INT8_RECIPE.version:
        raise StoreError(f"{where} holds int8 vectors of quantisation recipe {quantization_recipe(meta)}, but this "
                         f"artenc quantises with recipe {INT8_RECIPE.version}; their vectors differ, so queries and "
                         f"new works cannot join it: embed the images again into a new store")
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
