"""Decode any image file PIL can open into an RGB uint8 array, with safety limits.

Uploads come in every mode (CMYK JPEGs like Planet's, RGBA PNGs, palette GIFs, 16-bit
greyscale or 4-band TIFFs, EXIF-rotated phone pictures); the network wants RGB uint8.
Errors are raised as ImageDecodeError with a message a user can act on.

Memory: a worker needs a 32 px model input and a 256 px display copy, not a 40 MP array.
With ``keep_longest`` / ``keep_shortest`` the image is shrunk while it is decoded: JPEG's
DCT scaling (``draft``) skips most of the work, other formats are reduced by an integer
factor (``Image.reduce``) right after decoding, before any mode conversion, so a
full-size array never outlives the call.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from imagery import formats

DEFAULT_MAX_PIXELS = 40_000_000
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps does)
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


class ImageDecodeError(ValueError):
    """The file is not an image we can use; the message says why."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, scaling 16/32-bit data rather than clipping it."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "CMYK":
        return img.convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"unsupported image mode {img.mode!r}") from exc


def plain_message(exc: BaseException) -> str:
    """A decoder's message without object reprs or file paths (users read it; the paths
    of a server's storage are none of their business)."""
    text = re.sub(r"<[^>]*>", "the file", str(exc))
    return re.sub(r"(?:[A-Za-z]:)?[\\/][^\s'\"]+", "the file", text)


def reduction_factor(width: int, height: int, keep_longest: int = 0,
                     keep_shortest: int = 0) -> int:
    """The largest integer factor that keeps the longer side >= ``keep_longest`` and the
    shorter side >= ``keep_shortest`` (1: keep full size)."""
    if not keep_longest and not keep_shortest:
        return 1
    factors = []
    if keep_longest:
        factors.append(max(width, height) // keep_longest)
    if keep_shortest:
        factors.append(min(width, height) // keep_shortest)
    return max(1, min(factors))


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """Integer box reduction in the image's own mode where PIL can, else after RGB."""
    if factor <= 1:
        return img
    if img.mode in ("I;16", "I;16B", "I;16L"):
        img = img.convert("I")
    try:
        return img.reduce(factor)
    except ValueError:  # palette, 1-bit and other modes reduce() does not take
        return _to_rgb(img).reduce(factor)


def _pil_formats(source: str | Path | BinaryIO) -> tuple[str, ...]:
    """The PIL plugins allowed to decode ``source``: the one its magic bytes name."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as stream:
            found = formats.sniff(stream.read(formats.HEAD_BYTES))
    else:
        found = formats.sniff_file(source)
    if found is None:
        raise ImageDecodeError(formats.NOT_READABLE)
    return found.pil_formats


def decode_image(
    source: bytes | str | Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_longest: int = 0, keep_shortest: int = 0,
) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array; raise ImageDecodeError for unusable input.

    ``max_pixels`` guards against decompression bombs: the header is checked before
    any pixel is decoded. ``keep_longest`` / ``keep_shortest`` (0: full size) let the
    decoder shrink the image by an integer factor as long as its sides stay at least
    that long (see the module docstring).
    """
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError("the file is empty")
        source = io.BytesIO(source)
    try:
        allowed = _pil_formats(source)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=allowed) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        f"image is {width}x{height} = {width * height:,} pixels; "
                        f"the limit is {max_pixels:,}"
                    )
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                factor = reduction_factor(width, height, keep_longest, keep_shortest)
                if factor > 1 and img.format in ("JPEG", "MPO"):
                    img.draft(None, (-(-width // factor), -(-height // factor)))
                img.load()
                orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                small = _reduce(img, reduction_factor(*img.size, keep_longest, keep_shortest))
                if orientation in _TRANSPOSE:
                    small = small.transpose(_TRANSPOSE[orientation])
                arr = np.asarray(_to_rgb(small), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image has too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image file PIL can read (unknown format)") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"no such file: {exc.filename}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"image data is broken or truncated ({plain_message(exc)})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageDecodeError(f"decoded to an unexpected shape {arr.shape}")
    return arr


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB uint8 array to size x size with antialiasing (as PIL thumbnails do)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pil = Image.fromarray(image)
    return np.asarray(
        pil.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0), dtype=np.uint8
    )
