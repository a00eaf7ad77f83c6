"""Where image bytes live: originals by content hash, display copies made by workers."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

# PIL format name -> (file extension, content type served for the original)
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "TIFF": ("tif", "image/tiff"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "WEBP": ("webp", "image/webp"),
    "MPO": ("jpg", "image/jpeg"),
}


def original_path(sha256: str, image_format: str) -> str:
    """originals/ab/cd/<sha256>.<ext>: never the user's name, so nothing to escape."""
    ext = FORMATS[image_format][0]
    return f"originals/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


def save_original(sha256: str, image_format: str, content: io.IOBase) -> str:
    path = original_path(sha256, image_format)
    if default_storage.exists(path):  # same bytes, stored before (e.g. a retried upload)
        return path
    return default_storage.save(path, content)


def _jpeg(rgb: np.ndarray) -> ContentFile:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return ContentFile(buffer.getvalue())


def save_display_copies(sha256: str, rgb: np.ndarray, max_side: int) -> tuple[str, str]:
    """A browser-safe JPEG of the image and of its dehazed version (any upload format,
    TIFF included, is shown through these)."""
    from classifier.dehaze import dehaze

    small = display_array(rgb, max_side)
    paths = []
    for kind, pixels in (("display", small), ("dehazed", dehaze(small))):
        path = f"{kind}/{sha256[:2]}/{sha256}.jpg"
        default_storage.delete(path)  # a redo replaces the copy (no-op when absent)
        paths.append(default_storage.save(path, _jpeg(pixels)))
    return paths[0], paths[1]


def display_array(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The display copy's pixels: the image shrunk to fit ``max_side`` (never enlarged)."""
    if max(rgb.shape[:2]) <= max_side:
        return rgb
    pil = PILImage.fromarray(rgb)
    pil.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)
