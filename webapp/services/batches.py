"""A batch's life, in one place: creation, items, state and counts, submission, the lease
a worker runs it under, chunks, poison inputs, finishing, and resending stalled batches.

``check_*`` functions validate and raise ``BatchRefused``; ``do_*`` functions act, and
whatever they send to the workers goes out after their transaction commits. The intake
of files (``ingest``), the cutting of scenes (``tiling``), the per-chunk method
(``recognition``) and the heal job (``healing``) call this module; it calls none of them.

States. A batch is ``queued`` until a worker takes it (``running``) and ``done`` once it
is submitted, has no queued item and no scene left to cut. Counts are always recounted
from the items, never incremented, so they cannot drift whoever wrote last.

Poison inputs. Items count the times a worker started on them (committed before the
work, so a killed process leaves its mark). An item still queued after an attempt was
in a chunk when its worker died: it is retried alone, and one that a worker died on
alone fails with a message instead of killing workers in a loop. Faults that are not the
images' take their attempt back (``take_back_attempts``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from imagery.rasters import TileGrid
from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, Image, ModelVersion, Scene
from webapp.services import jobs
from webapp.services.leases import Lease, WorkKind, resend_stalled

log = logging.getLogger(__name__)

POISONED = "the worker stopped while processing this image; it was not retried again"


class BatchRefused(Exception):
    """A request that breaks a batch rule; ``conflict`` when the batch's state is why
    (HTTP 409), otherwise the request itself is incomplete (HTTP 400)."""

    def __init__(self, message: str, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


NO_FILES = "send one or more image files in the 'files' field"


# -- validation ---------------------------------------------------------------------------

def check_create(file_count: int, submit: bool) -> None:
    """A batch submitted as it is created needs files."""
    if submit and not file_count:
        raise BatchRefused(NO_FILES)


def check_add_files(batch: Batch, file_count: int) -> None:
    """Files go only into a batch not yet submitted (as stored now, whatever the caller's
    copy says), and a request adds at least one."""
    if Batch.objects.filter(pk=batch.pk, submitted=True).exists():
        raise BatchRefused("this batch was submitted; start a new batch", conflict=True)
    if not file_count:
        raise BatchRefused(NO_FILES)


# -- creation, items, counts, submission --------------------------------------------------

def do_create_batch(owner) -> Batch:
    return Batch.objects.create(owner=owner)


def set_initial_state(item: BatchItem, image: Image, model: ModelVersion) -> None:
    """An item of a known image starts finished: failed if the image is broken, done
    (reused) if the active model predicted it already."""
    item.image = image
    if image.status == Image.Status.BROKEN:
        item.status, item.error = BatchItem.Status.FAILED, image.error
    elif image.prediction_id and image.prediction.model_id == model.pk:
        item.status, item.reused = BatchItem.Status.DONE, True


def do_append_items(batch: Batch, items: list[BatchItem]) -> None:
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
    """Recount the batch from its items and move its state and its scenes' on."""
    counts = BatchItem.objects.filter(batch=batch).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=BatchItem.Status.DONE)),
        failed=Count("id", filter=Q(status=BatchItem.Status.FAILED)),
        reused=Count("id", filter=Q(reused=True)),
    )
    counts["total"] += tiles_to_come(batch)
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


def tiles_to_come(batch: Batch) -> int:
    """Tiles of the batch's scenes that are not items yet: each scene's grid is known
    from its header at upload, so the batch's total is final when it is submitted and
    progress only moves forward (the total drops only by the all-nodata tiles that
    tiling skips)."""
    pending = 0
    for scene in Scene.objects.filter(batch=batch, status__in=[
            Scene.Status.QUEUED, Scene.Status.TILING]).annotate(cut=Count("tile_set")):
        grid = TileGrid(scene.width, scene.height, scene.tile_size, scene.overlap, scene.edge)
        pending += max(len(grid) - scene.tiles_nodata - scene.cut, 0)
    return pending


def seconds_left(batch: Batch) -> float | None:
    """Time left at the rate measured since the batch started (None before a first
    result, and once it is done)."""
    finished = batch.done + batch.failed
    if batch.status == Batch.Status.DONE or not batch.started_at or finished == 0:
        return None
    elapsed = (timezone.now() - batch.started_at).total_seconds()
    return round(elapsed / finished * batch.remaining, 1)


def do_refresh_counts(batch_id: int) -> Batch:
    """``refresh_counts`` under the batch's row lock, in its own transaction."""
    with transaction.atomic():
        return refresh_counts(Batch.objects.select_for_update().get(pk=batch_id))


def do_submit_batch(batch: Batch) -> Batch:
    """All files are in: predict what is queued (sent once the transaction commits).
    Idempotent."""
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


# -- the lease and the heal job ----------------------------------------------------------

def _unfinished():
    return Batch.objects.filter(submitted=True).exclude(status=Batch.Status.DONE)


def _start(batch_id: int, now: datetime) -> None:
    Batch.objects.filter(pk=batch_id, status=Batch.Status.QUEUED).update(
        status=Batch.Status.RUNNING, started_at=now)


BATCHES = WorkKind(name="batch", plural="batches", model=Batch, unfinished=_unfinished,
                   send=jobs.predict_batch_on_commit, on_claim=_start)


def lease(batch_id: int) -> Lease:
    """A worker's lease on a batch (claim it before working on it)."""
    return Lease(BATCHES, batch_id)


def do_resend_stalled(now: datetime | None = None) -> list[int]:
    """Send every stalled batch again (the heal job); returns the ids this call sent."""
    return resend_stalled(BATCHES, now)


def do_requeue_unfinished() -> list[int]:
    """Send again every submitted batch that is not done (``manage.py requeue_batches``).

    Safe to call any time: the task is idempotent. The heal job does this by itself for
    stalled batches; this is for an operator who does not want to wait.
    """
    ids = list(_unfinished().values_list("pk", flat=True))
    Batch.objects.filter(pk__in=ids).update(queued_at=timezone.now())
    for batch_id in ids:
        jobs.predict_batch_on_commit(batch_id)
    return ids


# -- chunks, attempts, poison, finishing --------------------------------------------------

def next_chunk(batch_id: int, chunk_size: int) -> list[BatchItem]:
    """The next items to process: one suspect alone (a worker died while it was in a
    chunk), else up to ``chunk_size`` items within the chunk pixel budget."""
    queued = (BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.QUEUED)
              .select_related("image").order_by("position"))
    suspect = queued.filter(attempts__gte=1).first()
    if suspect is not None:
        return [suspect]
    items: list[BatchItem] = []
    pixels = 0
    for item in queued[:chunk_size]:
        size = item.image.width * item.image.height if item.image else 0
        if items and pixels + size > app_settings.PREDICT_CHUNK_PIXELS:
            break
        items.append(item)
        pixels += size
    return items


def count_attempt(items: list[BatchItem]) -> None:
    """One more worker started on these items (committed: survives the process dying)."""
    BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(
        attempts=F("attempts") + 1)


def take_back_attempts(items: list[BatchItem], tries: int = 5, pause: float = 1.0) -> bool:
    """Undo the attempt counted on ``items`` before a chunk that failed for a reason of
    its own (database, model, disk). The database may be the reason, so this retries on a
    fresh connection for a few seconds (a PostgreSQL restart); False if it never got
    through, and the items keep one attempt (they are then tried alone, not failed)."""
    ids = [item.pk for item in items]
    for attempt in range(tries):
        try:
            BatchItem.objects.filter(pk__in=ids, attempts__gt=0).update(
                attempts=F("attempts") - 1)
            return True
        except DatabaseError:
            if connection.in_atomic_block:
                return False
            connection.close()
            close_old_connections()
            if attempt + 1 < tries:
                time.sleep(pause)
    log.warning("could not take back the attempt on %d items; they will be tried alone",
                len(ids))
    return False


def fail_poisoned(batch_id: int) -> None:
    """Items a worker died on twice (in a chunk, then alone) fail, and so do their images."""
    poisoned = list(BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.QUEUED,
                                             attempts__gte=2).select_related("image"))
    if not poisoned:
        return
    with transaction.atomic():
        for item in poisoned:
            log.error("batch %s: %s killed its worker twice; failing it", batch_id,
                      item.image.sha256 if item.image else item.filename)
            if item.image is not None and item.image.status == Image.Status.PENDING:
                Image.objects.filter(pk=item.image_id).update(status=Image.Status.BROKEN,
                                                              error=POISONED)
        finish_items(poisoned, BatchItem.Status.FAILED, POISONED)


def finish_items(items: list[BatchItem], status: str, error: str,
                 reused: bool = False) -> None:
    """Mark items finished, in one UPDATE (``reused`` only ever turns on)."""
    if not items:
        return
    now = timezone.now()
    for item in items:
        item.status, item.error, item.reused = status, error, reused or item.reused
        item.updated_at = now
    fields = {"status": status, "error": error, "updated_at": now}
    if reused:
        fields["reused"] = True
    BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(**fields)
