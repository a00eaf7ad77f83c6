"""Upload safety before any file is stored: a per-file byte limit and safe file names."""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class RejectedUpload(SimpleUploadedFile):
    """An empty stand-in for a file that was refused while it streamed in."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, b"", "application/octet-stream")
        self.rejected_reason = reason


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops keeping a file's bytes once it passes MAX_UPLOAD_BYTES.

    First in FILE_UPLOAD_HANDLERS: it passes chunks on to the memory/temp-file handlers
    until the limit, then swallows the rest and hands back a RejectedUpload, so the one
    oversize file fails with a message while the others in the request go through.
    """

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > settings.MAX_UPLOAD_BYTES:
            self.too_large = True
            return None
        return raw_data

    def file_complete(self, file_size: int) -> RejectedUpload | None:
        if not self.too_large:
            return None
        return RejectedUpload(
            self.file_name or "unnamed",
            f"file is {format_size(self.received)}; the limit is "
            f"{format_size(settings.MAX_UPLOAD_BYTES)}",
        )


def format_size(n_bytes: float) -> str:
    """'61.2 MB', '1.9 KB' or '812 bytes': right for any limit (a 500 KB limit is not '0 MB')."""
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MB"
    if n_bytes >= 2**10:
        return f"{n_bytes / 2**10:.1f} KB"
    return f"{int(n_bytes)} bytes"


_UNSAFE = re.compile(r"[^\w.\- ()+,@=]")


def safe_filename(name: str | None, max_length: int = 200) -> str:
    """The base name of an uploaded file, safe to store and show.

    Drops any directory part (both separators), control characters and characters
    outside a conservative set; never returns '', '.', '..' or a hidden name.
    """
    name = unicodedata.normalize("NFKC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        return "unnamed"
    if len(name) > max_length:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem or name)[: max_length - len(ext) - 1] + ("." + ext if ext else "")
    return name
