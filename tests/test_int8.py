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
    assert cosine.mean() >= 0.995, cosine
    assert cosine.min() >= 0.99, cosine  # every image (the first recipe: 0.985 at worst on WikiArt)
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


def test_int8_cache_file_changes_with_every_field_of_the_recipe(lite0_encoder) -> None:
    """A changed recipe never reuses an INT8 copy quantised by another one (the cache file name
    digests every field, the version included)."""
    import dataclasses

    from artenc.runtime import INT8_RECIPE

    sig = lite0_encoder.signature
    paths = {_int8_path(sig)}
    changes = ({"version": "other"}, {"skip_share": INT8_RECIPE.skip_share / 2},
               {"skip_depthwise": not INT8_RECIPE.skip_depthwise}, {"skip_last": INT8_RECIPE.skip_last + 1},
               {"skip_matching": ("conv_pwl",)}, {"op_types": ("Conv",) if INT8_RECIPE.op_types != ("Conv",)
                                                  else ("Conv", "Clip")},
               {"calibrate": "Entropy"}, {"moving_average": not INT8_RECIPE.moving_average},
               {"images": INT8_RECIPE.images + 1},
               {"calibration": "waves" if INT8_RECIPE.calibration != "waves" else "scenes"})
    for change in changes:
        paths.add(_int8_path(sig, dataclasses.replace(INT8_RECIPE, **change)))
    assert len(paths) == len(changes) + 1
    assert _int8_path(sig) == _int8_path(sig, dataclasses.replace(INT8_RECIPE))  # same recipe, same file


def test_store_of_another_int8_recipe_is_refused(tmp_path: Path, int8_encoder) -> None:
    """The store records the recipe; an int8 store of another recipe (an older artenc's: no
    recipe recorded, `FIRST_INT8_RECIPE`) takes neither new vectors nor queries of this one."""
    import dataclasses

    from artenc.runtime import INT8_RECIPE, runtime_for_store
    from artenc.store import FIRST_INT8_RECIPE, Store, quantization_recipe

    write_gallery(tmp_path / "g", 2)
    store = tmp_path / "int8"
    embed_folders([tmp_path / "g"], store, encoder=int8_encoder, workers=0, progress=False)
    meta = json.loads((store / "meta.json").read_text())
    assert quantization_recipe(meta) == INT8_RECIPE.version == int8_encoder.signature.quantization_recipe
    assert runtime_for_store(meta) == ("onnx-int8", "cpu")
    summary = Store.open(store).summary()  # `artenc info` shows the recipe and the storage dtype
    assert summary["quantization_recipe"] == INT8_RECIPE.version and summary["dtype"] == "float32"
    older = dict(meta, quantization_recipe="some-older-recipe")
    if INT8_RECIPE.version != FIRST_INT8_RECIPE:
        older = {k: v for k, v in meta.items() if k != "quantization_recipe"}  # as an older artenc wrote it
    assert quantization_recipe(older) != INT8_RECIPE.version
    (store / "meta.json").write_text(json.dumps(older))
    with pytest.raises(StoreError, match="recipe"):
        runtime_for_store(older)
    with pytest.raises(StoreError, match="recipe"):
        encoder_for_store(older)
    with pytest.raises(StoreError, match="recipe"):
        embed_folders([tmp_path / "g"], store, workers=0, progress=False)
    with pytest.raises(StoreError, match="recipe"):
        Store.create(store, int8_encoder.signature)
    other = dataclasses.replace(int8_encoder.signature, quantization_recipe=quantization_recipe(older))
    Store.create(store, other)  # the store's own recipe is still accepted
    assert quantization_recipe({}) is None and quantization_recipe({"quantization": "int8"}) == FIRST_INT8_RECIPE


def test_scene_calibration_images_have_bars_and_flat_areas() -> None:
    """kind="scenes" adds what the waves lack (uniform bars, solid rectangles, dark to bright
    gain) to every second image, deterministically; an unknown kind is refused."""
    scenes, waves = calibration_images(64, n=8, kind="scenes"), calibration_images(64, n=8)
    np.testing.assert_array_equal(scenes, calibration_images(64, n=8, kind="scenes"))
    np.testing.assert_array_equal(scenes[0], waves[0])  # the same waves beneath (until the first scene)
    flat_rows = [(np.ptp(img, axis=(0, 2)) == 0).sum() + (np.ptp(img, axis=(0, 1)) == 0).sum() for img in scenes[1::2]]
    assert max(flat_rows) > 0  # at least one image with uniform bars
    assert not np.array_equal(scenes[1::2], waves[1::2])
    with pytest.raises(ParameterError, match="kind"):
        calibration_images(8, n=1, kind="photos")
