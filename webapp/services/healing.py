"""The heal job: no batch waits for an operator or for the broker's visibility timeout.

Celery beat runs ``heal`` every HEAL_INTERVAL_SECONDS in every worker (``celery worker
--beat``; see settings). A submitted, unfinished batch is sent again when both its last
worker heartbeat and its last message are older than BATCH_STALE_SECONDS:

- its worker died (a lost machine: the message stays unacknowledged for an hour);
- Redis restarted without persistence and lost the message (the batch stays "queued");
- the message could not be sent at all (the broker was down during the upload).

Each resend is claimed in the database first (compare-and-set on ``queued_at``), so heal
jobs running in several workers at once send a batch once. The task is idempotent, and a
worker takes a batch only once the previous worker's heartbeat is stale, so a resend of a
batch that is still running harmlessly finds it taken.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from webapp.models import Batch, RemovedImageCode
from webapp.services import jobs

log = logging.getLogger(__name__)

TOMBSTONE_DAYS = 7


def stalled(now: datetime | None = None):
    """Submitted, unfinished batches with no sign of life for BATCH_STALE_SECONDS."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.BATCH_STALE_SECONDS)
    return (Batch.objects.filter(submitted=True).exclude(status=Batch.Status.DONE)
            .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff))
            .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff)))


def requeue_stalled(now: datetime | None = None) -> list[int]:
    """Send every stalled batch again; returns the ids this call sent."""
    now = now or timezone.now()
    sent = []
    for batch_id, queued_at in stalled(now).values_list("pk", "queued_at"):
        if Batch.objects.filter(pk=batch_id, queued_at=queued_at).update(queued_at=now):
            jobs.predict_batch_on_commit(batch_id)  # outside a transaction: sent now
            sent.append(batch_id)
    if sent:
        log.warning("heal: sent %d stalled batches again: %s", len(sent), sent)
    return sent


def heal(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    requeued = requeue_stalled(now)
    purged, _ = RemovedImageCode.objects.filter(
        removed_at__lt=now - timedelta(days=TOMBSTONE_DAYS)).delete()
    return {"requeued": len(requeued), "tombstones_purged": purged}
