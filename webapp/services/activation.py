"""Activating a model, and re-tagging the collection with it; rolling back is the same.

Activation makes the model tag new uploads at once. With ``retag``, a re-tagging job (one
more kind of long work on the one lease / heal mechanism of ``webapp.services.leases``,
on the tagging queue) then walks every image nobody reviewed, in id order and in chunks:
it stores the model's prediction where there is none (once per image and model: a
rollback to an earlier model re-uses its stored predictions and computes nothing) and
makes it the image's current prediction and model labels, in one transaction with the
job's cursor, so a killed worker repeats no committed chunk. Reviewed images and the
labels people added or checked never change (``curation.apply_model_labels_many``).

A newer activation cancels an unfinished re-tagging of another model: the collection
follows the model that is active.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from webapp.conf import app_settings
from webapp.models import Image, ModelVersion, RetagJob
from webapp.services import jobs, recognition
from webapp.services.leases import Lease, long_work_kind, resend_stalled, work_under
from webapp.services.model_registry import activate_model

log = logging.getLogger(__name__)

__all__ = ["ActivationRefused", "RETAGS", "check_activate", "do_activate",
           "do_resend_stalled", "retag_status", "run_retag"]


class ActivationRefused(Exception):
    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


RETAGS = long_work_kind("re-tagging", "re-taggings", RetagJob, jobs.send_retag)


def do_resend_stalled(now: datetime | None = None) -> list[int]:
    return resend_stalled(RETAGS, now)


def check_activate(user, model: ModelVersion) -> None:
    if not user.has_perm("webapp.change_modelversion"):
        raise ActivationRefused("activating a model needs the change_modelversion "
                                "permission", forbidden=True)


def _to_retag() -> QuerySet[Image]:
    """Images whose tags follow the active model: predicted once, reviewed by nobody."""
    return Image.objects.filter(status=Image.Status.READY, reviewed=False)


def do_activate(model: ModelVersion, user, retag: bool = True) -> RetagJob | None:
    """Make ``model`` the active one; with ``retag``, queue the re-tagging of every
    unreviewed image (cancelling another model's unfinished one)."""
    check_activate(user, model)
    with transaction.atomic():
        activate_model(model)
        RETAGS.unfinished().exclude(model=model).update(
            status=RetagJob.Status.CANCELLED, finished_at=timezone.now(),
            error="another model was activated")
        if not retag:
            return None
        running = RETAGS.unfinished().filter(model=model).first()
        if running is not None:
            return running
        job = RetagJob.objects.create(model=model, total=_to_retag().count(),
                                      queued_at=timezone.now())
        jobs.retag_on_commit(job.pk)
    return job


def retag_status(model: ModelVersion) -> dict | None:
    """The latest re-tagging with this model, as the API shows it."""
    job = model.retags.order_by("-created_at", "-id").first()
    if job is None:
        return None
    return {"id": job.pk, "status": job.status, "done": job.done, "total": job.total,
            "predicted": job.predicted, "failed": job.failed, "error": job.error}


def run_retag(job_id: int, chunk_size: int | None = None) -> RetagJob | None:
    """Run (or resume) a re-tagging; idempotent: a second message finds it taken."""
    job = RetagJob.objects.filter(pk=job_id).first()
    if job is None or job.status not in RetagJob.UNFINISHED:
        return job
    size = chunk_size or app_settings.RETAG_CHUNK_SIZE
    if not work_under(Lease(RETAGS, job_id), lambda lease: _retag(lease, size)):
        return job
    return RetagJob.objects.get(pk=job_id)


def _retag(lease: Lease, chunk_size: int) -> None:
    job = RetagJob.objects.select_related("model").get(pk=lease.pk)
    model = job.model
    while True:
        lease.beat(force=True)
        job.refresh_from_db(fields=["status", "cursor"])
        if job.status != RetagJob.Status.RUNNING:
            return  # cancelled by a newer activation
        images = list(_to_retag().filter(pk__gt=job.cursor).order_by("pk")[:chunk_size])
        if not images:
            with transaction.atomic():
                lease.hold()
                RetagJob.objects.filter(pk=job.pk, status=RetagJob.Status.RUNNING).update(
                    status=RetagJob.Status.DONE, finished_at=timezone.now())
            return
        outputs, errors = recognition.predict_stored(images, model)
        lease.beat()
        with transaction.atomic():
            lease.hold()
            locked = list(Image.objects.select_for_update()
                          .filter(pk__in=[i.pk for i in images if i.pk not in errors]))
            ready = [image for image in locked if not image.reviewed]
            created = recognition.store_predictions(ready, model, outputs)
            jobs.encode_on_commit([image.pk for image in ready], text_only=True)
            RetagJob.objects.filter(pk=job.pk).update(
                cursor=images[-1].pk, done=F("done") + len(images),
                predicted=F("predicted") + sum(created.values()),
                failed=F("failed") + len(errors))
