"""Decode any image file PIL can open into an RGB uint8 array, with safety limits.

Uploads come in every mode (CMYK JPEGs like Planet's, RGBA PNGs, palette GIFs, 16-bit
greyscale or 4-band TIFFs, EXIF-rotated phone pictures); the network wants RGB uint8.
Errors are raised as ImageDecodeError with a message a user can act on.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """The file is not an image we can use; the message says why."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, scaling 16/32-bit data rather than clipping it."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
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


def decode_image(
    source: bytes | str | Path | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array; raise ImageDecodeError for unusable input.

    ``max_pixels`` guards against decompression bombs: the header is checked before
    any pixel is decoded.
    """
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError("the file is empty")
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        f"image is {width}x{height} = {width * height:,} pixels; "
                        f"the limit is {max_pixels:,}"
                    )
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
                arr = np.asarray(rgb, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image has too many pixels ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image file PIL can read (unknown format)") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"no such file: {exc.filename}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"image data is broken or truncated ({exc})") from exc
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
