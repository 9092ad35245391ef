"""SimCLR augmentations on PIL images, returning uint8 (3, H, W) arrays.

One view transform (`SimCLRView`) and a wrapper drawing several views of it
(`MultiView`), as in lightly's `SimCLRTransform`. Normalisation is not done here: the
backbone wrapper normalises uint8 input the way its weights expect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T


class PILGaussianBlur:
    """Gaussian blur with sigma drawn uniformly from `sigma` (Pillow's blur: ~10x faster than
    torchvision's on PIL input). Uses the torch RNG, so seeded views are reproducible."""

    def __init__(self, sigma: Sequence[float] = (0.1, 2.0)) -> None:
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def __call__(self, img: Image.Image) -> Image.Image:
        s = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * float(torch.rand(()))
        return img.filter(ImageFilter.GaussianBlur(radius=s))

    def __repr__(self) -> str:
        return f"PILGaussianBlur(sigma={self.sigma})"


class SimCLRView:
    """Random resized crop, horizontal flip, colour jitter, grayscale and Gaussian blur.

    Chen et al., SimCLR (ICML 2020), appendix A; defaults follow it except a larger
    minimum crop (`scale`), since style lives in the whole composition and brushwork.
    """

    def __init__(
        self, size: int = 224, scale: Sequence[float] = (0.2, 1.0), flip_p: float = 0.5,
        jitter_p: float = 0.8, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
        hue: float = 0.1, grayscale_p: float = 0.2, blur_p: float = 0.5, blur_sigma: Sequence[float] = (0.1, 2.0),
    ) -> None:
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("grayscale_p", grayscale_p), ("blur_p", blur_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (min, max) crop area fractions in (0, 1], got {list(scale)}")
        self.size = size
        self.transform = T.Compose([
            T.RandomResizedCrop(size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(flip_p),
            T.RandomApply([T.ColorJitter(brightness, contrast, saturation, hue)], p=jitter_p),
            T.RandomGrayscale(grayscale_p),
            T.RandomApply([PILGaussianBlur(blur_sigma)], p=blur_p),
        ])

    def __repr__(self) -> str:  # deterministic: the feature cache keys on it
        return f"SimCLRView(size={self.size}, {self.transform!r})"

    def __call__(self, img: Image.Image) -> np.ndarray:
        out = np.asarray(self.transform(img.convert("RGB")), dtype=np.uint8)
        return np.ascontiguousarray(out.transpose(2, 0, 1))


class MultiView:
    """`n_views` independent draws of one view transform: PIL -> uint8 (V, 3, H, W)."""

    def __init__(self, view: Callable[[Image.Image], np.ndarray], n_views: int = 2) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.view = view
        self.n_views = n_views

    def __call__(self, img: Image.Image) -> np.ndarray:
        return np.stack([self.view(img) for _ in range(self.n_views)])
