"""Upload safety before any file is stored: per-file byte limits, quotas, safe file names."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from webapp.conf import app_settings
from webapp.models import BatchItem, Image, Scene, UploadReservation


class UploadRejected(ValueError):
    """The file cannot become an image; the message tells the user why."""


RESERVATION_TTL = timedelta(hours=1)  # a crashed request's reservation stops counting


class Quota:
    """What a user may still add, counted in what it costs to keep and to process:
    files to this batch (MAX_FILES_PER_BATCH), newly stored bytes today
    (MAX_UPLOAD_BYTES_PER_DAY, over the last 24 hours; files already in the archive cost
    nothing), and decoded pixels, which bound the tiles a worker cuts and tags, in this
    batch (MAX_PIXELS_PER_BATCH) and today (MAX_PIXELS_PER_DAY). A 20 KB compressed
    GeoTIFF of 16 M pixels costs its 16 M pixels.

    A file takes its share with ``reserve`` while it is stored: the check and the
    reservation happen under one lock per user, and the reservation counts until the
    file's row exists, so parallel requests of one user cannot both pass a quota.
    """

    def __init__(self, batch) -> None:
        self.batch = batch
        # uploaded files: chips and scenes (a scene's tiles are not files of their own)
        self.files_left = app_settings.MAX_FILES_PER_BATCH - (
            BatchItem.objects.filter(batch=batch, scene_tile__isnull=True).count()
            + Scene.objects.filter(batch=batch).count())

    def take_file(self) -> None:
        if self.files_left <= 0:
            limit = app_settings.MAX_FILES_PER_BATCH
            raise UploadRejected(f"the batch holds its limit of {limit:,} files; put the "
                                 "rest in a new batch")
        self.files_left -= 1

    def usage(self) -> dict[str, int]:
        """Bytes and pixels stored (or being stored) today by the owner, and pixels in
        this batch."""
        now = timezone.now()
        since = now - timedelta(days=1)
        owner = self.batch.owner
        area = F("width") * F("height")
        chips = (Image.objects.filter(uploaded_by=owner, created_at__gte=since)
                 .exclude(scene_tiles__isnull=False)
                 .aggregate(bytes=Sum("size_bytes"), pixels=Sum(area)))
        scenes = (Scene.objects.filter(batch__owner=owner, created_at__gte=since)
                  .aggregate(bytes=Sum("size_bytes"), pixels=Sum(area)))
        live = UploadReservation.objects.filter(owner=owner,
                                                created_at__gte=now - RESERVATION_TTL)
        held = live.aggregate(bytes=Sum("size_bytes"), pixels=Sum("pixels"))
        held_here = live.filter(batch=self.batch).aggregate(pixels=Sum("pixels"))
        in_batch = (BatchItem.objects.filter(batch=self.batch, scene_tile__isnull=True,
                                             image__isnull=False)
                    .aggregate(pixels=Sum(F("image__width") * F("image__height"))))
        batch_scenes = Scene.objects.filter(batch=self.batch).aggregate(pixels=Sum(area))
        return {
            "bytes_today": (chips["bytes"] or 0) + (scenes["bytes"] or 0) + (held["bytes"] or 0),
            "pixels_today": (chips["pixels"] or 0) + (scenes["pixels"] or 0)
            + (held["pixels"] or 0),
            "pixels_batch": (in_batch["pixels"] or 0) + (batch_scenes["pixels"] or 0)
            + (held_here["pixels"] or 0),
        }

    @property
    def bytes_left(self) -> int:
        return app_settings.MAX_UPLOAD_BYTES_PER_DAY - self.usage()["bytes_today"]

    def _check(self, size: int, pixels: int) -> None:
        used = self.usage()
        if used["bytes_today"] + size > app_settings.MAX_UPLOAD_BYTES_PER_DAY:
            left = max(app_settings.MAX_UPLOAD_BYTES_PER_DAY - used["bytes_today"], 0)
            raise UploadRejected(
                f"your upload quota of {format_size(app_settings.MAX_UPLOAD_BYTES_PER_DAY)} per "
                f"24 hours is used up ({format_size(left)} left); upload the rest later")
        if used["pixels_batch"] + pixels > app_settings.MAX_PIXELS_PER_BATCH:
            left = max(app_settings.MAX_PIXELS_PER_BATCH - used["pixels_batch"], 0)
            raise UploadRejected(
                f"the batch's pixel quota of {app_settings.MAX_PIXELS_PER_BATCH:,} pixels "
                f"(MAX_PIXELS_PER_BATCH) would be passed: this file has {pixels:,}, "
                f"{left:,} are left; put it in a new batch")
        if used["pixels_today"] + pixels > app_settings.MAX_PIXELS_PER_DAY:
            left = max(app_settings.MAX_PIXELS_PER_DAY - used["pixels_today"], 0)
            raise UploadRejected(
                f"your pixel quota of {app_settings.MAX_PIXELS_PER_DAY:,} pixels per 24 hours "
                f"(MAX_PIXELS_PER_DAY) would be passed: this file has {pixels:,}, "
                f"{left:,} are left; upload it later")

    @contextmanager
    def reserve(self, size: int, pixels: int) -> Iterator[None]:
        """Hold ``size`` new bytes and ``pixels`` decoded pixels while a file is stored
        (raise UploadRejected when they do not fit); create the file's row inside."""
        with transaction.atomic():
            _lock_owner(self.batch.owner_id)
            self._check(size, pixels)
            reservation = UploadReservation.objects.create(
                owner_id=self.batch.owner_id, batch=self.batch, size_bytes=size,
                pixels=pixels)
        try:
            yield
        finally:
            UploadReservation.objects.filter(pk=reservation.pk).delete()


def _lock_owner(user_id: int) -> None:
    """Serialize quota checks of one user until the transaction ends: a PostgreSQL
    advisory lock; SQLite's transactions (IMMEDIATE) are serialized already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [QUOTA_LOCK_SPACE, user_id])


QUOTA_LOCK_SPACE = 20_261_204  # advisory lock namespace of upload quotas


class RejectedUpload(SimpleUploadedFile):
    """An empty stand-in for a file that was refused while it streamed in."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, b"", "application/octet-stream")
        self.rejected_reason = reason


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops keeping a file's bytes once it passes ``upload_byte_limit()``.

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
        if self.received > upload_byte_limit():
            self.too_large = True
            return None
        return raw_data

    def file_complete(self, file_size: int) -> RejectedUpload | None:
        if not self.too_large:
            return None
        return RejectedUpload(
            self.file_name or "unnamed",
            f"file is {format_size(self.received)}; the limit is "
            f"{format_size(upload_byte_limit())}",
        )


def upload_byte_limit() -> int:
    """The most bytes a file may have while it streams in: a scene's limit (whether it is
    a scene shows only once it is in), chips are held to MAX_UPLOAD_BYTES after."""
    return max(app_settings.MAX_UPLOAD_BYTES, app_settings.MAX_SCENE_BYTES)


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
