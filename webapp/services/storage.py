"""Where image bytes live: originals by content hash, display copies made by workers."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from classifier import dehaze
from imagery.digests import file_sha256

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


def save_original(sha256: str, image_format: str, content) -> str:
    """Store an original under its content hash; returns its storage name.

    The bytes go to a temporary name in the same folder, are flushed to disk, then
    renamed: a crash or a full disk never leaves a partial file under the final name.
    A file already there is reused only when its bytes still hash to ``sha256`` (a copy
    damaged by an earlier fault is replaced).
    """
    path = original_path(sha256, image_format)
    final = Path(default_storage.path(path))
    if final.exists() and file_sha256(final) == sha256:
        return path
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=".part-")
    try:
        with os.fdopen(handle, "wb") as out:
            if hasattr(content, "seek"):
                content.seek(0)
            for chunk in content.chunks():
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, settings.FILE_UPLOAD_PERMISSIONS or 0o640)
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def upload_sha256(upload) -> str:
    """The content hash of an uploaded file (its identity in the archive)."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    return digest.hexdigest()


def delete_original(path: str) -> None:
    """Remove a stored original that no record refers to (a file refused after storing)."""
    default_storage.delete(path)


def _jpeg(rgb: np.ndarray) -> ContentFile:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return ContentFile(buffer.getvalue())


def save_display_copies(sha256: str, rgb: np.ndarray, max_side: int) -> tuple[str, str]:
    """A browser-safe JPEG of the image and of its dehazed version (any upload format,
    TIFF included, is shown through these)."""
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
