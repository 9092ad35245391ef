"""Image discovery and loading that survives real collections.

Every failure becomes an `ImageLoadError` whose message names the problem, so the
caller can skip the file and record the reason instead of crashing a batch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from artenc.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS  # ~179 MP, one home: artenc.defaults
from artenc.preprocess import PreprocessConfig, to_uint8_chw

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".png", ".apng", ".webp", ".avif", ".tif", ".tiff", ".bmp",
     ".gif"}
)

# Truncated files must fail loudly, not decode as grey garbage.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(Exception):
    """An image file could not be turned into RGB pixels; the message says why."""


class NotAnImageError(ImageLoadError):
    """The bytes are no image at all: no image format's signature matches their start (a
    damaged image, e.g. a PNG cut after its header, is a plain `ImageLoadError`)."""


# Pillow formats whose signature test matches ordinary text or data (XBM: "#define") or stubs
# Pillow cannot decode (scientific data, video, vector): a signature of theirs does not make
# a file an image.
_LOOSE_SIGNATURES = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF", "IPTC", "XBM", "FITS"})
SIGNATURE_BYTES = 16  # the prefix Pillow's `Image.open` gives each format's signature test


def signature_formats(prefix: bytes) -> list[str]:
    """Pillow formats whose signature test (`Image.OPEN[fmt][1]`, the check `Image.open` runs
    first) accepts `prefix`, the first `SIGNATURE_BYTES` of a file; [] for text and other data.

    Only the signature is checked, not the header, so a truncated or corrupt image still names
    its format: this tells "not an image" from "a damaged image".
    """
    Image.init()
    return [fmt for fmt, (_factory, accept) in Image.OPEN.items()
            if accept is not None and fmt not in _LOOSE_SIGNATURES and _accepts(accept, prefix[:SIGNATURE_BYTES])]


def absolute(path: str | os.PathLike) -> Path:
    """Absolute, normalised path that keeps symlinks as the user named them."""
    return Path(os.path.normpath(os.path.abspath(path)))


def display_path(path: str | os.PathLike) -> str:
    """`path` as valid Unicode text: itself when its name is valid UTF-8, else with every byte
    that is not escaped as `\\xNN` (`os.fsencode` + "backslashreplace").

    The one rule for file names that are not valid UTF-8 (`os.fsdecode` keeps such bytes as
    lone surrogates, which JSON consumers, parquet and pandas' Arrow strings cannot hold):
    artenc stores, prints and reports them in this form, and skips such files with a reason
    (`name_problem`).
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def name_problem(path: str | os.PathLike) -> str | None:
    """Why artenc cannot keep `path` in a store (None when it can): a name that is not valid
    UTF-8. The reason recorded for such a file when it is skipped."""
    if display_path(path) == os.fspath(path):
        return None
    return "file name is not valid UTF-8 (rename it, e.g. with convmv, to embed it)"


def sniff_image(path: str | os.PathLike) -> bool | None:
    """Whether a file's content is an image format Pillow reads, from its first bytes.

    Reads `SIGNATURE_BYTES` (16) bytes and checks them against the signature test of every
    format registered in Pillow (`signature_formats`), then lets the matching formats parse the
    header (`Image.open(..., formats=...)`, no pixel decoding): an image is a file whose
    header one of Pillow's formats parses. Text, CSV and other files are
    rejected at the first step, so folders of non-images cost one small read per file.
    Returns True (an image, maybe damaged: decoding will say), False (not an image), or None
    when the file cannot be read (the caller records why when it tries to read it).
    """
    try:
        with open(path, "rb") as f:
            formats = signature_formats(f.read(SIGNATURE_BYTES))
            if not formats:
                return False
            f.seek(0)
            try:
                with Image.open(f, formats=formats):
                    return True
            except Image.UnidentifiedImageError:  # an OSError: caught before the others
                return False
            except (Image.DecompressionBombError, OSError):
                return True  # an image, too large or unreadable past its header: decoding says why
            except Exception:  # noqa: BLE001 - UnidentifiedImageError, ValueError...: a header no format parses
                return False
    except OSError:
        return None


def _accepts(accept: Callable[[bytes], object], prefix: bytes) -> bool:
    """A Pillow signature check on `prefix`; some raise on prefixes shorter than they expect."""
    try:
        return bool(accept(prefix))
    except Exception:  # noqa: BLE001 - struct.error, IndexError...: not this format
        return False


@dataclass
class Discovery:
    """What `scan_images` found under its roots.

    images: files taken as images (an image extension, a root given as a file, or image
    content), absolute, sorted; not_images: other files (content no image format; pipes,
    sockets, devices), sorted; skipped_folders: (folder, reason) for folders not scanned:
    unreadable, or a symlink to a folder already scanned (loops, second names of a folder). Hidden files and folders
    (name starting with ".") are ignored and counted nowhere.
    """

    images: list[Path] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    skipped_folders: list[tuple[Path, str]] = field(default_factory=list)


def scan_images(roots: Iterable[str | os.PathLike]) -> Discovery:
    """Find the files under `roots` (files or folders, recursive) and sort them into images and
    non-images (see `Discovery`).

    A file is an image when its extension is in `IMAGE_EXTENSIONS` (any case), when it was
    given as a root, or when `sniff_image` recognises its content (`.jpg_large`, no extension,
    any name); a damaged file with an image extension is an image that decoding will skip with
    a reason. Symlinked folders are followed; each real folder is scanned once (real folders
    before symlinks to them), every other link to it is listed in `skipped_folders`, so loops
    end. Paths keep the names the user sees (symlinks unresolved). Raises FileNotFoundError
    for a missing root.
    """
    images: set[Path] = set()
    not_images: set[Path] = set()
    skipped: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}  # real path of a scanned folder -> the name it was scanned under
    links: list[Path] = []  # symlinked folders, scanned after every real folder

    def scan(folder: Path) -> None:
        stack = [folder]
        while stack:
            current = stack.pop()
            real = os.path.realpath(current)
            if real in seen:
                if seen[real] != current:
                    skipped.append((current, f"same folder as {display_path(seen[real])}, already scanned"))
                continue
            seen[real] = current
            try:
                with os.scandir(current) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                skipped.append((current, f"cannot list folder ({exc.strerror or exc})"))
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = absolute(entry.path)
                try:  # is_dir / is_file follow symlinks
                    is_dir, is_link = entry.is_dir(), entry.is_symlink()
                    special = not is_dir and not entry.is_file() and os.path.exists(path)
                except OSError:
                    is_dir = is_link = special = False
                if is_dir:
                    (links if is_link else subfolders).append(path)
                elif special:
                    not_images.add(path)  # a pipe, socket or device: never opened (reading could block)
                elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS or sniff_image(path) is not False:
                    images.add(path)  # unreadable files too (dangling links): embedding records why
                else:
                    not_images.add(path)
            stack.extend(reversed(subfolders))

    folders = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        if root.is_dir():
            folders.append(absolute(root))
        else:
            images.add(absolute(root))
    for folder in folders:
        scan(folder)
    while links:
        scan(links.pop(0))
    return Discovery(sorted(images), sorted(not_images - images), skipped)


def discover_images(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Return image files under `roots` (files or folders, recursive), sorted, de-duplicated.

    `scan_images(roots).images`: images by extension or content, symlinked folders followed
    once. Hidden files and folders are ignored. Raises FileNotFoundError for a missing root.
    """
    return scan_images(roots).images


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to RGB, the one conversion of artenc.

    Transparency (RGBA, LA, PA, palette with a transparent index) is alpha-composited on
    white, so hidden colours under alpha = 0 never show; 16/32-bit greyscale is scaled to
    8 bits by the format's range; float images by their min..max. Used by `open_image`
    (embed, queries, the web page) and by the scraper's saved JPEGs. Returns `img` itself
    when it is already RGB.
    """
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale to 8 bits by the actual range of the format.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        img = Image.fromarray(arr.astype("uint8"), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an RGB image with EXIF orientation applied.

    Returns the image and the original (width, height) as stored in the file,
    after orientation. `draft_size` lets large JPEGs decode at a reduced scale
    (never below `draft_size` on the short side). Raises ImageLoadError.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # our guard below checks the header size, with a clearer message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: decompression-bomb guard: {width}x{height} = {width * height} pixels "
                    f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if draft_size and img.format == "JPEG" and min(img.size) >= 2 * draft_size:
                # JPEG DCT scaling: the largest 1/2, 1/4, 1/8 reduction still >= the request
                scale = draft_size / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            img.load()
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            img = to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageLoadError(f"{name}: decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        formats = signature_formats(data)
        if formats:  # e.g. a PNG cut right after its signature or IHDR chunk
            raise ImageLoadError(f"{name}: truncated or corrupt image (a {formats[0]} signature, "
                                 "but its header cannot be read)") from exc
        raise NotAnImageError(f"{name}: not an image (format not recognised)") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "image file is truncated" in msg:
            raise ImageLoadError(f"{name}: truncated image ({msg})") from exc
        raise ImageLoadError(f"{name}: corrupt or unreadable image ({msg})") from exc
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError) as exc:
        raise ImageLoadError(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from exc
    return img, (width, height)


def load_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Read a file and decode it to RGB (see `open_image`). Raises ImageLoadError."""
    return open_image(read_bytes(path), str(path), max_pixels=max_pixels, draft_size=draft_size)[0]


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; ImageLoadError naming the path when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data`, 64 hex digits (the store's content hash of a file)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, eq=False)
class Crop:
    """One image ready for a model: `pixels` uint8 (3, S, S) RGB (S = `PreprocessConfig.size`,
    not normalised), the source `width` x `height` in pixels after EXIF orientation, and
    the `sha256` of the file's bytes."""

    pixels: np.ndarray
    width: int
    height: int
    sha256: str


def decode_crop(
    source: bytes | str | os.PathLike,
    preprocess: PreprocessConfig,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    sha256: str | None = None,
) -> Crop:
    """Decode an image file (path or bytes) and centre-crop it the way `preprocess` says.

    The one decode-and-crop path of artenc (embedding, queries, the web page, the training
    feature cache): `open_image` (EXIF orientation, any mode to RGB, decompression-bomb
    guard `max_pixels` = width * height of the file, large JPEGs decoded at a reduced DCT
    scale no smaller than `preprocess.resize_to`), then `preprocess.to_uint8_chw` (optional
    letterbox trimming when `preprocess.trim_borders`, resize, centre crop; memory bounded
    for any aspect ratio, see `preprocess.resize_and_crop`). `name` labels messages
    (default: the path, or "<bytes>"); `sha256` skips hashing when the caller already has
    the bytes' digest. Raises ImageLoadError (message "<name>: <reason>").
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), name or "<bytes>"
    else:
        data, name = read_bytes(source), name or str(source)
    img, (width, height) = open_image(data, name, max_pixels=max_pixels, draft_size=preprocess.resize_to)
    return Crop(to_uint8_chw(img, preprocess), width, height, sha256 or sha256_hex(data))
