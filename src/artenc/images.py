"""Image discovery and loading that survives real collections.

Every failure becomes an `ImageLoadError` whose message names the problem, so the
caller can skip the file and record the reason instead of crashing a batch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

# one home for both limits: artenc.defaults (~179 MP; long side at most 100 x the short side)
from artenc.defaults import MAX_ASPECT_RATIO as DEFAULT_MAX_ASPECT_RATIO
from artenc.defaults import MAX_PIXELS as DEFAULT_MAX_PIXELS
from artenc.errors import ParameterError
from artenc.preprocess import PreprocessConfig, to_uint8_chw
from artenc.quality import ImageStats, image_stats

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


NAME_PROBLEM = "file name is not valid UTF-8 (rename it, e.g. with convmv, to embed it)"


def name_problem(path: str | os.PathLike) -> str | None:
    """Why artenc cannot keep `path` in a store (None when it can): a name that is not valid
    UTF-8. The reason recorded for such a file when it is skipped."""
    if display_path(path) == os.fspath(path):
        return None
    return NAME_PROBLEM


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
        elif root.is_file():
            images.add(absolute(root))
        else:
            not_images.add(absolute(root))  # a pipe, socket or device: never opened (reading could block)
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


# Pixels converted at once when a mode needs arithmetic to become RGB (alpha compositing,
# 16-bit and float scaling): the temporaries of one tile (RGBA copies, float64 arrays) stay
# within a few tens of MB whatever the image's size, on top of the decoded image and its RGB copy.
TILE_PIXELS = 1 << 20

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _tiles(width: int, height: int, pixels: int | None = None):
    """Boxes (left, top, right, bottom) covering a width x height image, each of at most `pixels`
    (default `TILE_PIXELS`) pixels: bands of whole rows, or pieces of one row when a row alone
    is longer."""
    pixels = pixels or TILE_PIXELS
    tile_w = min(width, pixels)
    rows = max(1, pixels // tile_w)
    for top in range(0, height, rows):
        for left in range(0, width, tile_w):
            yield left, top, min(left + tile_w, width), min(top + rows, height)


def _map_tiles(img: Image.Image, convert) -> Image.Image:
    """`convert` (a per-pixel conversion to RGB) applied tile by tile into one RGB image: the same
    pixels as `convert(img)`, with temporaries bounded by `TILE_PIXELS`."""
    width, height = img.size
    if width * height <= TILE_PIXELS:
        return convert(img)
    out = Image.new("RGB", img.size)
    for box in _tiles(width, height):
        out.paste(convert(img.crop(box)), box[:2])
    return out


def _on_white(img: Image.Image) -> Image.Image:
    """Alpha (or palette transparency) composited over opaque white, as RGB."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _finite_range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of the finite values of a mode-F image, tile by tile; (0, 0) when none is finite."""
    lo, hi = math.inf, -math.inf
    for box in _tiles(*img.size):
        arr = np.asarray(img.crop(box), dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a Pillow image of any mode to RGB, the one conversion of artenc.

    Transparency (RGBA, LA, PA, palette with a transparent index) is alpha-composited on
    white, so hidden colours under alpha = 0 never show. Used by `open_image` (embed,
    queries, the web page) and by the scraper's saved JPEGs; returns `img` itself when it
    is already RGB. 16/32-bit integer greyscale is scaled to 8 bits by the range of its
    format (65535 for I;16, 255 for mode I whose values fit 8 bits), float greyscale by its finite min..max
    (NaN and -inf become black, +inf white). Modes that need arithmetic are converted tile
    by tile (`TILE_PIXELS`), so the memory beyond the decoded image is its RGB result plus
    one tile's temporaries, for any size and aspect ratio.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return _map_tiles(img, _on_white)
    if mode in _INTEGER_MODES:
        peak = 65535.0 if img.getextrema()[1] > 255 or mode.startswith("I;16") else 255.0

        def scale(tile: Image.Image) -> Image.Image:
            arr = np.asarray(tile, dtype=np.float64)
            return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype("uint8"), "L").convert("RGB")

        return _map_tiles(img, scale)
    if mode == "F":
        lo, hi = _finite_range(img)

        def stretch(tile: Image.Image) -> Image.Image:
            arr = np.nan_to_num(np.asarray(tile, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
            arr = (arr - lo) / (hi - lo or 1.0) * 255.0
            return Image.fromarray(arr.astype("uint8"), "L").convert("RGB")

        return _map_tiles(img, stretch)
    return img.convert("RGB")


def _ratio_text(width: int, height: int) -> str:
    """"1:10000" for a 1 x 10,000 image, "333.3:1" for 1000 x 3 (the short side as 1)."""
    long_side, short_side = max(width, height), min(width, height)
    ratio = f"{long_side / short_side:.1f}".removesuffix(".0")
    return f"1:{ratio}" if width <= height else f"{ratio}:1"


def check_max_aspect_ratio(max_aspect_ratio: float | None) -> None:
    """Raise ParameterError("max_aspect_ratio") unless it is None (no limit) or >= 1 (long side /
    short side; NaN is refused)."""
    if max_aspect_ratio is not None and not max_aspect_ratio >= 1:
        raise ParameterError("max_aspect_ratio", f"must be >= 1 (long side / short side), got {max_aspect_ratio}")


def check_geometry(
    width: int,
    height: int,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
) -> None:
    """Refuse an image from its header size, before any pixel is decoded.

    `width` x `height` in pixels, as the file declares them. Raises ImageLoadError
    ("<name>: <reason>") when the image has no pixels, when width * height exceeds
    `max_pixels` (the decompression-bomb guard), or when the long side exceeds
    `max_aspect_ratio` times the short side (a 1 x 10,000 strip has no meaningful
    centre crop, see `artenc.defaults.MAX_ASPECT_RATIO`); None disables a limit.
    Raises ParameterError for a `max_aspect_ratio` below 1 (`check_max_aspect_ratio`).
    """
    check_max_aspect_ratio(max_aspect_ratio)
    if width < 1 or height < 1:
        raise ImageLoadError(f"{name}: no pixels ({width}x{height} px)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: decompression-bomb guard: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels} (raise max_pixels to allow it)"
        )
    if max_aspect_ratio is not None and max(width, height) > max_aspect_ratio * min(width, height):
        limit = f"{max_aspect_ratio:g}"
        limit = f"1:{limit}" if width <= height else f"{limit}:1"
        raise ImageLoadError(
            f"{name}: aspect ratio {_ratio_text(width, height)} ({width}x{height} px) exceeds {limit}, "
            "too thin for a meaningful centre crop (raise max_aspect_ratio to allow it)"
        )


def open_image(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    draft_size: int | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode image bytes to an RGB image with EXIF orientation applied.

    Returns the image and the original (width, height) as stored in the file,
    after orientation. The header size is checked first (`check_geometry`: `max_pixels`,
    `max_aspect_ratio`), so a refused file costs no decoding. `draft_size` lets large
    JPEGs decode at a reduced scale (never below `draft_size` on the short side).
    Memory: the decoded image, its RGB conversion (`to_rgb`, tiled) and, for rotated
    files, one transposed copy: a few bytes per pixel, at most `max_pixels` pixels.
    Raises ImageLoadError.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    _check_before_open(data, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    Image.MAX_IMAGE_PIXELS = None  # our guard below checks the header size, with a clearer message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            # the header size, checked before EXIF is read: a PNG's getexif decodes the pixels
            width, height = img.size
            check_geometry(width, height, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
            # the first frame: Pillow opens at frame 0; `is_animated` is not asked, since for a
            # GIF it reads (and allocates) the second frame, which no header check has seen
            if img.tell() != 0:
                img.seek(0)
            if draft_size and img.format == "JPEG" and min(img.size) >= 2 * draft_size:
                # JPEG DCT scaling: the largest 1/2, 1/4, 1/8 reduction still >= the request
                scale = draft_size / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            img.load()
            # read after loading: TIFF turns the image itself (its header size is already turned)
            # and drops the tag; PNG keeps its eXIf chunk after the pixels
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            img = to_rgb(img)
    except (ImageLoadError, ParameterError):
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
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError, EOFError, struct.error, OverflowError,
            ZeroDivisionError) as exc:
        raise ImageLoadError(f"{name}: corrupt image ({type(exc).__name__}: {exc})") from exc
    return img, (width, height)


# Formats whose Pillow plugin allocates or decodes pixels inside `Image.open`, before any
# header size can be checked: icons hold whole embedded PNGs of any size (a 2.4 MB .ico can
# decode to 25,000 x 25,000). They are icons, not artworks: refused as unsupported.
_DECODES_ON_OPEN = ("ICO", "ICNS", "CUR")


def _gif_first_frame(data: bytes) -> tuple[int, int] | None:
    """(right, bottom) extent of a GIF's first frame from its image descriptor, read without
    Pillow (whose GIF plugin allocates the first frame's disposal area inside `Image.open`);
    None when the stream ends before the descriptor (Pillow then reports the damage)."""
    if len(data) < 13:
        return None
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # header, screen, colour table
    while pos < len(data):
        block = data[pos]
        if block == 0x2C:  # image descriptor: left, top, width, height (little endian)
            if pos + 9 > len(data):
                return None
            left, top, width, height = struct.unpack_from("<4H", data, pos + 1)
            return left + width, top + height
        if block != 0x21:  # not an extension: no frame in this stream
            return None
        pos += 2  # introducer and label, then data sub-blocks until an empty one
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return None


def _check_before_open(data: bytes, name: str, *, max_pixels: int | None,
                       max_aspect_ratio: float | None) -> None:
    """The header guards for formats that allocate inside `Image.open` (see `_DECODES_ON_OPEN`,
    and GIF's first frame, which may be far larger than the logical screen Pillow reports)."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        extent = _gif_first_frame(data)
        if extent is not None and max_pixels is not None and extent[0] * extent[1] > max_pixels:
            raise ImageLoadError(f"{name}: decompression bomb: the first GIF frame reaches {extent[0]}x{extent[1]} "
                                 f"px, more than {max_pixels} pixels (raise max_pixels to allow it)")
        return
    # the icon formats' own signature tests first: ~0.1 ms of every image's decoding saved where
    # none of them matches (the whole `signature_formats` runs ~30 tests), the same answer
    Image.init()
    prefix = data[:SIGNATURE_BYTES]
    if not any(fmt in Image.OPEN and Image.OPEN[fmt][1] is not None and _accepts(Image.OPEN[fmt][1], prefix)
               for fmt in _DECODES_ON_OPEN):
        return
    formats = signature_formats(data)
    if formats and all(fmt in _DECODES_ON_OPEN for fmt in formats):
        raise ImageLoadError(f"{name}: unsupported image format {formats[0]} (icons hold embedded images "
                             "of any size; convert the file to PNG or JPEG)")


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    draft_size: int | None = None,
) -> Image.Image:
    """Read a file and decode it to RGB (see `open_image`: the same header guards, so training
    augmentation, thumbnails and verification refuse what `embed` skips). Raises ImageLoadError."""
    data = read_image_bytes(path, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    return open_image(data, str(path), max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                      draft_size=draft_size)[0]


HEADER_BYTES = 1 << 16  # read first to check a file's header before the file is read whole


def read_image_bytes(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
) -> bytes:
    """The bytes of an image file whose header passed the guards of `open_image`.

    The header is checked from the first HEADER_BYTES and the format's own header parser (no
    pixel is decoded) before the file is read whole, so a file whose header is refused costs
    64 KiB of memory whatever its size (a 3 GB TIFF claiming 20,000 x 30,000 px is refused
    without being read). Damage the header parser cannot read is left to `open_image`, which
    reports it. A file shorter than HEADER_BYTES is read once, its size checked by `open_image`
    before any pixel is decoded. Raises ImageLoadError.
    """
    name = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            if not head:
                raise ImageLoadError(f"{name}: empty file (0 bytes)")
            _check_before_open(head, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
            if len(head) < HEADER_BYTES and not f.read(1):
                # the whole file is read: `open_image` checks the header size before decoding it
                return head
            if head[:3] != b"GIF":  # GIF: Pillow's open allocates the first frame, checked above
                f.seek(0)
                size = _header_size(f)
                if size is not None:
                    check_geometry(*size, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    return read_bytes(path)


def _header_size(f) -> tuple[int, int] | None:
    """(width, height) from an image file's header (Pillow's lazy `Image.open`), None when the
    header cannot be parsed (decoding then reports why)."""
    Image.MAX_IMAGE_PIXELS = None  # the size is checked by `check_geometry`
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(f) as img:
                return img.size
    except Exception:  # noqa: BLE001 - any header damage: open_image reads the bytes and names it
        return None


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
    not normalised), the source `width` x `height` in pixels after EXIF orientation, the
    `sha256` of the file's bytes and, when asked (`decode_crop(..., quality=True)`), the
    image's quality scores `stats` (`artenc.quality.ImageStats`), else None."""

    pixels: np.ndarray
    width: int
    height: int
    sha256: str
    stats: ImageStats | None = None


def decode_crop(
    source: bytes | str | os.PathLike,
    preprocess: PreprocessConfig,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_aspect_ratio: float | None = DEFAULT_MAX_ASPECT_RATIO,
    name: str | None = None,
    sha256: str | None = None,
    quality: bool = False,
) -> Crop:
    """Decode an image file (path or bytes) and centre-crop it the way `preprocess` says.

    The one decode-and-crop path of artenc (embedding, queries, the web page, the training
    feature cache): `open_image` (header guards first: decompression-bomb guard `max_pixels`
    = width * height of the file and `max_aspect_ratio` = long side / short side, see
    `check_geometry`; then EXIF orientation, any mode to RGB, large JPEGs decoded at a
    reduced DCT scale no smaller than `preprocess.resize_to`), then
    `preprocess.to_uint8_chw` (optional letterbox trimming when `preprocess.trim_borders`,
    resize, centre crop; memory bounded for any aspect ratio, see
    `preprocess.resize_and_crop`). Peak memory is a few bytes per decoded pixel for every
    format and geometry (scripts/bench_memory.py measures it). `name` labels messages
    (default: the path, or "<bytes>"); `sha256` skips hashing when the caller already has
    the bytes' digest. `quality` also measures the image's quality scores
    (`artenc.quality.image_stats`: brightness, blur, entropy, colourfulness, borders...) on
    a 256-px thumbnail of the image already decoded (before border trimming), for `Crop.stats`:
    a few milliseconds, no second decode. Raises ImageLoadError (message "<name>:
    <reason>"), ParameterError for a `max_aspect_ratio` below 1.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), name or "<bytes>"
    else:
        data = read_image_bytes(source, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
        name = name or str(source)
    img, (width, height) = open_image(data, name, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                                      draft_size=preprocess.resize_to)
    try:
        pixels = to_uint8_chw(img, preprocess)
    except (ValueError, OverflowError) as exc:
        raise ImageLoadError(f"{name}: cannot resample {width}x{height} px ({type(exc).__name__}: {exc})") from exc
    stats = image_stats(img) if quality else None
    return Crop(pixels, width, height, sha256 or sha256_hex(data), stats)
