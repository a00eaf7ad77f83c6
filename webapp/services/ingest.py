"""The intake of files: uploads become batch items; each new image is stored once.

Each file is checked on its own (bytes, header, format, pixel count) and a bad one
fails alone with a message; the others go on. Full decoding happens in the worker. The
batch itself (its rules, items, counts and submission) is ``webapp.services.batches``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, transaction
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from imagery import formats
from imagery.decode import plain_message
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, Scene
from webapp.services import batches, scenes, splits
from webapp.services.model_registry import active_model
from webapp.services.storage import FORMATS, save_original, upload_sha256
from webapp.services.upload_limits import Quota, UploadRejected, format_size, safe_filename

__all__ = ["Quota", "UploadRejected"]  # where callers have always found them

log = logging.getLogger(__name__)


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
    if upload.size > app_settings.MAX_UPLOAD_BYTES:
        raise UploadRejected(f"file is {format_size(upload.size)}; the limit is "
                             f"{format_size(app_settings.MAX_UPLOAD_BYTES)}")
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
    if width * height > app_settings.MAX_IMAGE_PIXELS:
        raise UploadRejected(f"image is {width}x{height} = {width * height:,} pixels; "
                             f"the limit is {app_settings.MAX_IMAGE_PIXELS:,}")
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
                    size_bytes=upload.size, width=width, height=height, uploaded_by=owner,
                    split=splits.split_for(sha))
            return image, True
        except IntegrityError:  # the same file arrived in a parallel request
            return Image.objects.get(sha256=sha), False


def add_files(batch: Batch, uploads: Iterable[UploadedFile]) -> list[BatchItem | Scene]:
    """Add uploaded files to a batch, in order: a scene (webapp.services.scenes; its tiles
    become items when a worker cuts it) or an item, failed or not (a file over a quota
    fails alone with a message; what was stored stays). Raises BatchRefused when the
    batch takes no files (submitted) or there are none."""
    uploads = list(uploads)
    batches.check_add_files(batch, len(uploads))
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
            batches.set_initial_state(item, image, model)
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
    batches.do_append_items(batch, items)
    batch.refresh_from_db()
    return added
