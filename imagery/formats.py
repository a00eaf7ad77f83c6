"""What a file is, decided by its first bytes before any parser sees it.

Every upload is hostile until proven an image: the magic bytes pick one format, and that
format names the only parser allowed to open the file (PIL's plugin, or one GDAL driver).
A file whose bytes match none of them is refused before PIL or GDAL reads a byte, so an
XML file named ``scene.tif`` that would make GDAL's WMTS driver fetch a URL never reaches
GDAL, and a parser bug in a format we do not read is not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

HEAD_BYTES = 16  # enough for every signature below


@dataclass(frozen=True)
class Format:
    """A format we read: its storage name (PIL's), the PIL plugins allowed to decode it,
    and the GDAL driver allowed to open it as a scene (None: never a scene)."""

    name: str
    pil_formats: tuple[str, ...]
    gdal_driver: str | None
    label: str


JPEG = Format("JPEG", ("JPEG", "MPO"), "JPEG", "JPEG")
PNG = Format("PNG", ("PNG",), "PNG", "PNG")
TIFF = Format("TIFF", ("TIFF",), "GTiff", "TIFF / GeoTIFF")
BIGTIFF = Format("TIFF", ("TIFF",), "GTiff", "BigTIFF")
GIF = Format("GIF", ("GIF",), None, "GIF")
BMP = Format("BMP", ("BMP",), None, "BMP")
WEBP = Format("WEBP", ("WEBP",), None, "WebP")

READABLE = (JPEG, PNG, TIFF, GIF, BMP, WEBP)
NOT_READABLE = ("not an image or GeoTIFF this app reads (it reads "
                + ", ".join(f.label for f in READABLE) + "; BigTIFF too)")


def sniff(head: bytes) -> Format | None:
    """The format whose signature starts ``head``, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return BIGTIFF
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head.startswith(b"BM") and len(head) >= 14:
        return BMP
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def sniff_file(stream: BinaryIO) -> Format | None:
    """``sniff`` of a seekable file's first bytes; the position is put back."""
    position = stream.tell()
    try:
        stream.seek(0)
        return sniff(stream.read(HEAD_BYTES))
    finally:
        stream.seek(position)
