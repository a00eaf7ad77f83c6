"""The heal job: no long work waits for an operator or for the broker's visibility timeout.

Celery beat runs ``heal`` every HEAL_INTERVAL_SECONDS in every worker (``celery worker
--beat``; see settings). Every kind of long work (batches, training jobs, re-taggings) is
resent by the one mechanism of
``webapp.services.leases`` when both its last heartbeat and its last message are older
than BATCH_STALE_SECONDS:

- its worker died (a lost machine: the message stays unacknowledged for an hour);
- Redis restarted without persistence and lost the message (the work stays "queued");
- the message could not be sent at all (the broker was down during the upload).

It also purges the search index's old tombstones.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from webapp.models import RemovedImageCode
from webapp.services import activation, batches, trainings

log = logging.getLogger(__name__)

TOMBSTONE_DAYS = 7


def heal(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    requeued = batches.do_resend_stalled(now)
    trainings_sent = trainings.do_resend_stalled(now)
    retags_sent = activation.do_resend_stalled(now)
    purged, _ = RemovedImageCode.objects.filter(
        removed_at__lt=now - timedelta(days=TOMBSTONE_DAYS)).delete()
    return {"requeued": len(requeued), "trainings": len(trainings_sent),
            "retags": len(retags_sent), "tombstones_purged": purged}
