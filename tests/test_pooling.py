"""Texture-statistics feature wrappers: values against NumPy references, ONNX export,
save/load of exported encoders, and fingerprints that tell wrappers apart."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from artenc.backbones import (
    HeadedEncoder,
    layer_stats_backbone,
    load_exported_encoder,
    save_encoder,
)
from artenc.backbones.weights import fingerprint_module
from artenc.layers import (
    LayerStatistics,
    MultiScaleFeatures,
    ProjectionHead,
    channel_covariance,
    wrap_features,
)
from artenc.preprocess import PreprocessConfig, to_uint8_chw
from artenc.runtime import EmbeddingModule, encoder_from_backbone


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()


def reference_maps(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
    """The named layers' outputs, read by walking the EfficientNet stages by hand."""
    out = {}
    h = model.bn1(model.conv_stem(x))
    for i, block in enumerate(model.blocks):
        h = block(h)
        out[f"blocks.{i}"] = h
    out["bn2"] = model.bn2(model.conv_head(h))
    return {n: out[n].detach().numpy().astype(np.float64) for n in names}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_channel_covariance_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, 4, 6)).astype(np.float32)
    rows, cols = torch.triu_indices(5, 5)
    got = channel_covariance(torch.from_numpy(x), rows * 5 + cols).numpy()
    for n in range(3):
        cov = np.cov(x[n].reshape(5, -1), bias=True)
        expected = cov[rows.numpy(), cols.numpy()]
        np.testing.assert_allclose(got[n], np.sign(expected) * np.sqrt(np.abs(expected)), rtol=1e-4, atol=1e-6)
    assert got.shape == (3, 15)


def test_layer_statistics_values_and_dim(lite0):
    layers, cov_layers = ["blocks.2", "bn2"], ["blocks.1"]
    wrapper = LayerStatistics(lite0, layers, cov_layers)
    assert wrapper.dim == 2 * (40 + 1280) + 24 * 25 // 2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = wrapper(x).numpy()
    maps = reference_maps(lite0, x, ["blocks.2", "bn2", "blocks.1"])
    parts = []
    for name in layers:
        flat = maps[name].reshape(2, maps[name].shape[1], -1)
        parts += [unit(flat.mean(2)), unit(flat.std(2, ddof=1))]
    flat = maps["blocks.1"].reshape(2, 24, -1)
    iu = np.triu_indices(24)
    covs = np.stack([np.cov(f, bias=True)[iu] for f in flat])
    parts.append(unit(np.sign(covs) * np.sqrt(np.abs(covs))))
    np.testing.assert_allclose(got, np.concatenate(parts, 1), rtol=1e-3, atol=1e-5)
    # the pooled vector of timm is the mean of bn2's output
    np.testing.assert_allclose(got[:, 80:1360], unit(lite0.forward_head(lite0.forward_features(x), pre_logits=True)
                                                     .detach().numpy()), rtol=1e-3, atol=1e-5)


def test_layer_statistics_survives_deepcopy_and_bad_names(lite0):
    wrapper = LayerStatistics(lite0, ["blocks.3"], ["blocks.3"])
    twin = copy.deepcopy(wrapper)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), wrapper(x))
    with pytest.raises(ValueError, match="no layer named.*blocks.99"):
        LayerStatistics(lite0, ["blocks.99"])
    with pytest.raises(ValueError, match="not run by"):
        LayerStatistics(lite0, ["classifier"])
    with pytest.raises(ValueError, match="at least one layer"):
        LayerStatistics(lite0, [])


def test_fingerprint_tells_wrappers_on_the_same_weights_apart(lite0):
    a = LayerStatistics(lite0, ["bn2"], ["blocks.5"])
    b = LayerStatistics(lite0, ["bn2"], ["blocks.4"])
    c = MultiScaleFeatures(lite0, [1, 3])
    prints = {fingerprint_module(m) for m in (a, b, c, lite0)}
    assert len(prints) == 4
    assert fingerprint_module(a) == fingerprint_module(wrap_features(lite0, a.config()))


def test_layer_statistics_onnx_matches_torch():
    backbone = layer_stats_backbone("tf_efficientnet_lite0", layers=["blocks.5", "bn2"], covariance_layers=["blocks.4"])
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)) for _ in range(3)]
    x = np.stack([to_uint8_chw(img, backbone.preprocess) for img in images])
    onnx_out = encoder_from_backbone(backbone, runtime="onnx", device="cpu").encode(x)
    with torch.no_grad():
        torch_out = EmbeddingModule(backbone.model, backbone.preprocess).eval()(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (3, 2 * (192 + 1280) + 112 * 113 // 2)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)


@pytest.mark.parametrize(("kind", "hidden", "input_dropout"), [("multiscale", 32, 0.0), ("layer_stats", 16, 0.5)])
def test_wrapper_and_standardizing_head_export_round_trip(tmp_path, lite0, kind, hidden, input_dropout):
    """Each wrapper + a standardising head survive save/load bit for bit."""
    if kind == "multiscale":
        wrapper = MultiScaleFeatures(lite0, [1, 3]).eval()
        assert wrapper.dim == 1280 + 2 * (24 + 112)
    else:
        wrapper = LayerStatistics(lite0, ["blocks.2", "bn2"], ["blocks.1"]).eval()
    head = ProjectionHead([hidden, 8], in_dim=wrapper.dim, normalize_input=True, input_batch_norm=True,
                          input_dropout=input_dropout)
    head.train()
    head(torch.randn(16, wrapper.dim))  # running statistics move away from (0, 1)
    head.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = HeadedEncoder(wrapper, head)(x)
    path = save_encoder(tmp_path / "encoder.pt", backbone_name="tf_efficientnet_lite0", backbone=wrapper,
                        head=head, preprocess=PreprocessConfig(), features=wrapper.config())
    loaded = load_exported_encoder(path)
    assert loaded.dim == 8
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), expected)


def test_head_input_dropout_only_while_training():
    head = ProjectionHead([100, 4], batch_norm=False, input_dropout=0.5)
    x = torch.ones(1, 100)
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head(x), head(x))
    assert head.config()["input_dropout"] == 0.5
    with pytest.raises(ValueError, match="input_dropout"):
        ProjectionHead([4, 2], input_dropout=1.0)
