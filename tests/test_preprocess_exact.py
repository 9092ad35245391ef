"""The box-only resample serves `resize_and_crop` only where it equals resize-then-crop exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from artenc.preprocess import PreprocessConfig, _box_path_exact, crop_plan, resize_and_crop


@pytest.mark.parametrize("size", [(224, 224), (300, 300), (257, 257), (96, 96), (1000, 1000), (512, 256),
                                  (300, 260), (224, 300), (640, 480), (500, 375), (64, 900), (900, 64),
                                  *((s, s) for s in range(17, 1200, 97))])
@pytest.mark.parametrize("cfg", [PreprocessConfig(), PreprocessConfig(size=240, crop_pct=0.882),
                                 PreprocessConfig(interpolation="bilinear")])
def test_resize_and_crop_equals_resize_then_crop(size: tuple[int, int], cfg: PreprocessConfig) -> None:
    w, h = size
    img = Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    plan = crop_plan(w, h, cfg)
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[cfg.interpolation]
    reference = np.asarray(img.resize(plan.resized, resample).crop(plan.window))
    np.testing.assert_array_equal(np.asarray(resize_and_crop(img, cfg)), reference)


def test_box_path_taken_for_square_images_only_where_exact() -> None:
    cfg = PreprocessConfig()  # resize_to 256: the short side's scale is always dyadic
    assert _box_path_exact(crop_plan(224, 224, cfg), 224, 224)
    assert _box_path_exact(crop_plan(1000, 1000, cfg), 1000, 1000)
    assert not _box_path_exact(crop_plan(300, 260, cfg), 300, 260)  # 300 / 295: not dyadic
    assert not _box_path_exact(crop_plan(64, 900, cfg), 64, 900)  # dyadic, but measured to differ
    assert not _box_path_exact(crop_plan(100, 100, PreprocessConfig(size=240, crop_pct=0.882)), 100, 100)  # 100/272
