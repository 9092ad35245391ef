"""The integer fast paths of `artenc.quality` equal the float definitions they replace."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from artenc.quality import _laplacian_variance, _median_level, image_stats
from tests.conftest import painting


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 257])
def test_median_level_is_numpy_median_truncated(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(50):
        values = rng.integers(0, 256, n, dtype=np.uint8)
        assert _median_level(values) == int(np.median(values))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (2, 2), (64, 48), (256, 256)])
def test_laplacian_variance_equals_the_float_definition(shape: tuple[int, int]) -> None:
    grey = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    p = np.pad(grey.astype(np.float64), 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * grey
    assert _laplacian_variance(grey) == pytest.approx(float(lap.var()), rel=1e-12, abs=1e-12)


def test_colour_scores_equal_their_float_definitions() -> None:
    """colourfulness (Hasler & Süsstrunk) and tone_residual from integer sums equal the float64
    formulas on the halved thumbnail (a 256 x 256 painting: no resampling, no bars)."""
    img = painting(5, (256, 256))
    stats = image_stats(img)
    rgb = np.asarray(img.reduce(2), dtype=np.float64)
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    expected = math.sqrt(rg.var() + yb.var()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    assert stats.colourfulness == pytest.approx(expected, rel=1e-12)
    band = np.asarray(img.reduce(2).convert("L")).ravel() // 8
    within = sum(((x[band == b] - x[band == b].mean()) ** 2).sum() for x in (rg.ravel(), yb.ravel())
                 for b in np.unique(band))
    assert stats.tone_residual == pytest.approx(within / ((rg ** 2).sum() + (yb ** 2).sum()), rel=1e-9)
    assert image_stats(Image.new("RGB", (30, 20), (40, 40, 40))).tone_residual == 0.0
