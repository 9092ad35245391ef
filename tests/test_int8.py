"""The INT8 ONNX Runtime path (`runtime="onnx-int8"`): close to float32, cached, never mixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artenc.embedding import embed_folders
from artenc.errors import ParameterError, StoreError
from artenc.images import decode_crop
from artenc.runtime import (
    _int8_path,
    _onnx_path,
    calibration_images,
    create_encoder,
    encoder_for_store,
)
from tests.conftest import write_gallery


@pytest.fixture(scope="module")
def int8_encoder():
    return create_encoder("tf_efficientnet_lite0", runtime="onnx-int8", device="cpu")


def test_int8_vectors_close_to_float32(tmp_path: Path, lite0_encoder, int8_encoder) -> None:
    paths = write_gallery(tmp_path / "g", 16, 100, size=(300, 240))
    pixels = np.stack([decode_crop(p, lite0_encoder.preprocess).pixels for p in paths])
    fp32, int8 = lite0_encoder.encode(pixels), int8_encoder.encode(pixels)
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.mean() >= 0.99, cosine
    assert cosine.min() >= 0.98, cosine
    assert not np.allclose(fp32, int8, atol=1e-4)  # it really is another (quantised) model


def test_int8_copy_cached_beside_the_export(int8_encoder) -> None:
    sig = int8_encoder.signature
    path = _int8_path(sig)
    assert sig.quantization == "int8" and int8_encoder.runtime == "onnx-int8"
    assert path.is_file() and path.parent == _onnx_path(sig).parent and path != _onnx_path(sig)
    stamp = path.stat().st_mtime_ns
    again = create_encoder("tf_efficientnet_lite0", runtime="onnx-int8", device="cpu")
    assert path.stat().st_mtime_ns == stamp  # quantised once, then read from the cache
    assert again.signature == sig


def test_calibration_images_deterministic() -> None:
    a, b = calibration_images(32, n=4), calibration_images(32, n=4)
    assert a.dtype == np.uint8 and a.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(a, b)
    assert a.std() > 20  # not a flat grey


def test_int8_and_float32_never_share_a_store(tmp_path: Path, lite0_encoder, int8_encoder) -> None:
    write_gallery(tmp_path / "g", 3)
    store = tmp_path / "int8"
    report = embed_folders([tmp_path / "g"], store, encoder=int8_encoder, workers=0, progress=False)
    assert report.runtime == "onnx-int8" and report.embedded == 3
    meta = json.loads((store / "meta.json").read_text())
    assert meta["quantization"] == "int8"
    with pytest.raises(StoreError, match="quantization int8"):
        embed_folders([tmp_path / "g"], store, encoder=lite0_encoder, workers=0, progress=False)
    fp32_store = tmp_path / "fp32"
    embed_folders([tmp_path / "g"], fp32_store, encoder=lite0_encoder, workers=0, progress=False)
    assert "quantization" not in json.loads((fp32_store / "meta.json").read_text())  # old stores unchanged
    with pytest.raises(StoreError, match="quantization None"):
        embed_folders([tmp_path / "g"], fp32_store, encoder=int8_encoder, workers=0, progress=False)
    # queries get the store's own runtime; another one is refused
    assert encoder_for_store(meta).runtime == "onnx-int8"
    with pytest.raises(ParameterError, match="runtime"):
        encoder_for_store(meta, runtime="onnx")
    with pytest.raises(ParameterError, match="runtime"):
        encoder_for_store(json.loads((fp32_store / "meta.json").read_text()), runtime="onnx-int8")


def test_plain_rerun_adopts_the_int8_store_runtime(tmp_path: Path, int8_encoder) -> None:
    """runtime left at "auto" on an int8 store embeds with onnx-int8 (as dtype=None adopts the
    store's dtype); an explicit other runtime is a one-line ParameterError, not the signature dump."""
    from artenc.cli import user_message

    write_gallery(tmp_path / "g", 3)
    store = tmp_path / "int8"
    embed_folders([tmp_path / "g"], store, encoder=int8_encoder, workers=0, progress=False)
    write_gallery(tmp_path / "g", 1, start=10)
    again = embed_folders([tmp_path / "g"], store, workers=0, progress=False)  # runtime="auto"
    assert again.runtime == "onnx-int8" and again.unchanged == 3 and again.embedded == 1
    with pytest.raises(ParameterError) as info:
        embed_folders([tmp_path / "g"], store, runtime="onnx", workers=0, progress=False)
    message = user_message(info.value)
    assert message.startswith("--runtime must be onnx-int8") and "int8-quantised" in message
    assert "preprocess" not in message and str(store) in message
