"""Backbone registry: offline pretrained weights are real, names and weights fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artenc.backbones import create_backbone, list_backbones, load_exported_encoder, save_encoder
from artenc.backbones.efficientnet_lite import packaged_weights_path, rename_lite_keys
from artenc.backbones.weights import fingerprint_module, load_state_dict_file
from artenc.errors import UsageError, WeightsUnavailableError
from artenc.layers import ProjectionHead
from artenc.preprocess import normalize_uint8, to_uint8_chw

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("tf_efficientnet_lite0")


def _logits(backbone, img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(
        normalize_uint8(to_uint8_chw(img, backbone.preprocess)[None], backbone.preprocess)
    )
    with torch.inference_mode():
        return backbone.model(x)[0]


def test_offline_lite0_weights_classify_imagenet_photos(lite0) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    cat = _logits(lite0, Image.fromarray(skimage_data.chelsea()))
    coffee = _logits(lite0, Image.fromarray(skimage_data.coffee()))
    assert int(cat.argmax()) in CAT_CLASSES
    assert int(coffee.argmax()) == ESPRESSO
    assert float(coffee.softmax(0)[ESPRESSO]) > 0.5


def test_lite0_preprocessing_and_dim(lite0) -> None:
    pre = lite0.preprocess
    assert (pre.size, pre.crop_pct, pre.interpolation, pre.resize_to) == (
        224,
        0.875,
        "bicubic",
        256,
    )
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)
    assert lite0.dim == 1280


@pytest.mark.parametrize(
    ("name", "size"), [("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)]
)
def test_lite1_lite2_load_strict(name: str, size: int) -> None:
    b = create_backbone(name)
    assert b.preprocess.size == size and b.dim == 1280
    with torch.inference_mode():
        feats = b.model.forward_head(
            b.model.forward_features(torch.zeros(1, 3, size, size)), pre_logits=True
        )
    assert feats.shape == (1, 1280) and torch.isfinite(feats).all()


def test_rename_maps_every_packaged_key(lite0) -> None:
    sd = load_state_dict_file(packaged_weights_path(0))
    blocks = [f"blocks.{s}.{j}" for s, st in enumerate(lite0.model.blocks) for j in range(len(st))]
    renamed = rename_lite_keys(sd, blocks)
    assert len(sd) == len(renamed) == 296
    assert set(renamed) == set(lite0.model.state_dict())
    with pytest.raises(KeyError, match="unexpected key"):
        rename_lite_keys({"_mystery.weight": torch.zeros(1)}, blocks)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UsageError) as info:
        create_backbone("not_a_model_xyz")
    msg = str(info.value)
    for name in ("tf_efficientnet_lite0", "resnet50", "timm", "open_clip"):
        assert name in msg
    assert set(list_backbones()) >= {"tf_efficientnet_lite0", "resnet18", "resnet34", "resnet50"}


def test_torchvision_without_network_names_file_and_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("resnet18")
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg and "weights=PATH" in msg


def test_timm_without_network_fails_clearly(monkeypatch) -> None:
    hf_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match="weights=PATH"):
        create_backbone("resnet10t")


def test_local_weights_file_for_any_architecture(tmp_path: Path) -> None:
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    b = create_backbone("resnet18", weights=str(path))
    assert b.dim == 512 and b.weights_source == str(path)
    assert torch.equal(b.model.net.conv1.weight, net.conv1.weight)
    assert b.preprocess.size == 224 and b.preprocess.resize_to == 256

    import timm

    tnet = timm.create_model("resnet10t", pretrained=False)
    tpath = tmp_path / "r10t.safetensors"
    from safetensors.torch import save_file

    save_file(tnet.state_dict(), str(tpath))
    tb = create_backbone("resnet10t", weights=str(tpath))
    assert fingerprint_module(tb.model) == fingerprint_module(tnet)


def test_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(UsageError, match="wrong.pth: weights do not match"):
        create_backbone("resnet18", weights=str(path))
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="garbage.pth: cannot read weights"):
        create_backbone("tf_efficientnet_lite0", weights=str(bad))


def test_exported_encoder_roundtrip(tmp_path: Path, lite0) -> None:
    torch.manual_seed(0)
    head = ProjectionHead([1280, 64, 16]).eval()
    path = save_encoder(
        tmp_path / "run" / "encoder.pt",
        backbone_name=lite0.name,
        backbone=lite0.model,
        head=head,
        preprocess=lite0.preprocess,
    )
    loaded = create_backbone(str(path))
    assert loaded.dim == 16 and loaded.preprocess == lite0.preprocess
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = head(lite0.model.forward_head(lite0.model.forward_features(x), pre_logits=True))
        got = loaded.model.forward_head(loaded.model.forward_features(x), pre_logits=True)
    assert torch.allclose(expected, got, atol=1e-5)
    assert load_exported_encoder(tmp_path / "run").dim == 16  # a run folder works too
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(UsageError, match="bad.pt: not an artenc encoder"):
        create_backbone(str(tmp_path / "bad.pt"))
    assert np.isfinite(got.numpy()).all()
