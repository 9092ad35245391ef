"""Training data: labels CSV + images, splits, SimCLR augmentations, the backbone feature cache."""

from artenc.data.augment import MultiView, SimCLRView
from artenc.data.datamodule import ContrastiveDataModule
from artenc.data.splits import SplitSpec

__all__ = ["ContrastiveDataModule", "MultiView", "SimCLRView", "SplitSpec"]
