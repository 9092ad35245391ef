"""artenc: fine-art images to vectors, and what to do with them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("artenc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

from artenc.training import train  # noqa: E402

__all__ = ["__version__", "train"]
