"""artenc: fine-art images to vectors, and what to do with them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("artenc")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
