"""Uploads become batch items: store each new image once, queue only what is new.

Each file is checked on its own (bytes, header, format, pixel count) and a bad one
fails alone with a message; the others go on. Full decoding happens in the worker.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from classifier.imageio import plain_message
from imagery import formats
from webapp.models import Batch, BatchItem, Image, ModelVersion, Scene
from webapp.services import jobs, scenes
from webapp.services.model_registry import active_model
from webapp.services.storage import FORMATS, save_original, upload_sha256
from webapp.services.upload_limits import Quota, UploadRejected, format_size, safe_filename

__all__ = ["Quota", "UploadRejected"]  # where callers have always found them

log = logging.getLogger(__name__)


def create_batch(owner) -> Batch:
    return Batch.objects.create(owner=owner)


def check_received(upload: UploadedFile) -> formats.Format:
    """The format the file's magic bytes name; raise UploadRejected for a file refused
    while it streamed in, an empty one, or one that is no format we read (before any
    parser sees it)."""
    reason = getattr(upload, "rejected_reason", None)
    if reason:
        raise UploadRejected(reason)
    if not upload.size:
        raise UploadRejected("the file is empty")
    found = formats.sniff_file(upload)
    if found is None:
        raise UploadRejected(formats.NOT_READABLE)
    return found


def inspect_upload(upload: UploadedFile) -> tuple[str, int, int]:
    """(PIL format, width, height) from the header only, read by the one PIL plugin the
    magic bytes name; raise UploadRejected."""
    found = check_received(upload)
    if upload.size > settings.MAX_UPLOAD_BYTES:
        raise UploadRejected(f"file is {format_size(upload.size)}; the limit is "
                             f"{format_size(settings.MAX_UPLOAD_BYTES)}")
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(upload, formats=found.pil_formats) as img:
                image_format, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        raise UploadRejected("not an image (the format is not recognised)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise UploadRejected("image has too many pixels (decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadRejected(f"image header is broken ({plain_message(exc)})") from None
    finally:
        upload.seek(0)
    if image_format not in FORMATS:
        raise UploadRejected(f"{image_format} images are not accepted; "
                             f"use one of {', '.join(sorted(set(FORMATS) - {'MPO'}))}")
    if width * height > settings.MAX_IMAGE_PIXELS:
        raise UploadRejected(f"image is {width}x{height} = {width * height:,} pixels; "
                             f"the limit is {settings.MAX_IMAGE_PIXELS:,}")
    return image_format, width, height


def _image_for(upload: UploadedFile, name: str, owner, quota: Quota) -> tuple[Image, bool]:
    """The stored Image for these bytes, created if new; (image, created)."""
    sha = upload_sha256(upload)
    existing = Image.objects.filter(sha256=sha).first()
    if existing is not None:
        if existing.scene_only:  # a scene's tile, now uploaded as a file: in the collection
            Image.objects.filter(pk=existing.pk).update(scene_only=False)
            existing.scene_only = False
        return existing, False
    image_format, width, height = inspect_upload(upload)
    with quota.reserve(upload.size, width * height):
        path = save_original(sha, image_format, upload)
        try:
            with transaction.atomic():
                image = Image.objects.create(
                    sha256=sha, file=path, original_name=name, format=image_format,
                    size_bytes=upload.size, width=width, height=height, uploaded_by=owner)
            return image, True
        except IntegrityError:  # the same file arrived in a parallel request
            return Image.objects.get(sha256=sha), False


def add_files(batch: Batch, uploads: Iterable[UploadedFile]) -> list[BatchItem | Scene]:
    """Add uploaded files to a batch, in order: a scene (webapp.services.scenes; its tiles
    become items when a worker cuts it) or an item, failed or not (a file over a quota
    fails alone with a message; what was stored stays)."""
    model = active_model()
    quota = Quota(batch)
    items = []
    added: list[BatchItem | Scene] = []
    for upload in uploads:
        name = safe_filename(upload.name)
        item = BatchItem(filename=name)
        try:
            quota.take_file()
            found = check_received(upload)  # no parser has seen the file before this
            scene_header = scenes.detect(upload, found)
            if scene_header is not None:
                added.append(scenes.add_scene(batch, upload, name, scene_header, quota))
                continue
            image, _created = _image_for(upload, name, batch.owner, quota)
            set_initial_state(item, image, model)
        except UploadRejected as exc:
            item.status, item.error = BatchItem.Status.FAILED, str(exc)
        except OSError:  # storage trouble: this file fails, the batch goes on
            log.exception("storing %s failed", name)
            item.status = BatchItem.Status.FAILED
            item.error = "the file could not be stored; upload it again later"
        except DatabaseError:
            raise  # not this file's fault: the request fails whole and can be sent again
        except Exception:  # noqa: BLE001 - a parser's surprise is this file's failure alone
            log.exception("reading the header of %s failed", name)
            item.status = BatchItem.Status.FAILED
            item.error = "the file's header could not be read (not a usable image or GeoTIFF)"
        items.append(item)
        added.append(item)
    append_items(batch, items)
    batch.refresh_from_db()
    return added


def set_initial_state(item: BatchItem, image: Image, model: ModelVersion) -> None:
    """An item of a known image starts finished: failed if the image is broken, done
    (reused) if the active model predicted it already."""
    item.image = image
    if image.status == Image.Status.BROKEN:
        item.status, item.error = BatchItem.Status.FAILED, image.error
    elif image.prediction_id and image.prediction.model_id == model.pk:
        item.status, item.reused = BatchItem.Status.DONE, True


def append_items(batch: Batch, items: list[BatchItem]) -> None:
    """Give items the next positions of the batch and store them, counts refreshed."""
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        start = (BatchItem.objects.filter(batch=locked).aggregate(top=Max("position"))["top"]
                 if items else None)
        start = -1 if start is None else start
        for offset, item in enumerate(items, start=1):
            item.batch, item.position = locked, start + offset
        BatchItem.objects.bulk_create(items)
        refresh_counts(locked)


def refresh_counts(batch: Batch) -> Batch:
    """Recount the batch from its items (never drifts, whoever wrote last)."""
    counts = BatchItem.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=BatchItem.Status.DONE)),
        failed=Count("id", filter=Q(status=BatchItem.Status.FAILED)),
        reused=Count("id", filter=Q(reused=True)),
    )
    for key, value in counts.items():
        setattr(batch, key, value)
    fields = list(counts)
    # scenes whose tiles are all finished are done; a scene not yet cut keeps its batch open
    Scene.objects.filter(batch=batch, status=Scene.Status.TAGGING).exclude(
        tile_set__item__status=BatchItem.Status.QUEUED).update(status=Scene.Status.DONE)
    untiled = Scene.objects.filter(batch=batch, status__in=[
        Scene.Status.QUEUED, Scene.Status.TILING]).exists()
    if batch.submitted and batch.remaining == 0 and not untiled \
            and batch.status != Batch.Status.DONE:
        batch.status, batch.finished_at = Batch.Status.DONE, timezone.now()
        fields += ["status", "finished_at"]
    batch.save(update_fields=fields)
    return batch


def submit_batch(batch: Batch) -> Batch:
    """All files are in: predict what is queued (sent once the transaction commits)."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if not batch.submitted:
            batch.submitted = True
            batch.save(update_fields=["submitted"])
        refresh_counts(batch)
        if batch.status != Batch.Status.DONE:
            Batch.objects.filter(pk=batch.pk).update(queued_at=timezone.now())
            jobs.predict_batch_on_commit(batch.pk)
    return batch


def requeue_unfinished() -> list[int]:
    """Send again every submitted batch that is not done (``manage.py requeue_batches``).

    Safe to call any time: the task is idempotent. The heal job does this by itself for
    stalled batches; this is for an operator who does not want to wait.
    """
    ids = list(Batch.objects.filter(submitted=True).exclude(status=Batch.Status.DONE)
               .values_list("pk", flat=True))
    Batch.objects.filter(pk__in=ids).update(queued_at=timezone.now())
    for batch_id in ids:
        jobs.predict_batch_on_commit(batch_id)
    return ids
