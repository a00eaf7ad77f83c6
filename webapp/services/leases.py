"""A worker's lease on a batch: who runs it, and its heartbeat.

The worker running a batch holds ``Batch.worker`` (its token) and renews
``Batch.heartbeat_at``; it commits work only while it still holds the lease, and another
worker takes the batch only once the heartbeat is stale (or its holder, a process of the
same machine, is gone). The heal job (webapp.services.healing) resends batches whose
heartbeat went stale. Tiling and prediction both run under it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from webapp.models import Batch

log = logging.getLogger(__name__)

__all__ = ["Lease", "LeaseLost"]


class LeaseLost(Exception):
    """Another worker took the batch over (this one was silent for too long)."""


class Lease:
    """This worker's claim on a batch, renewed in the database as its heartbeat."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.every = min(settings.BATCH_STALE_SECONDS / 4, 10.0)
        self._last = 0.0

    def claim(self) -> bool:
        """Take the batch unless another worker holds it with a fresh heartbeat (a holder
        that was a process of this machine and is gone does not count)."""
        now = timezone.now()
        stale = now - timedelta(seconds=settings.BATCH_STALE_SECONDS)
        free = Q(worker="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
        holder = Batch.objects.filter(pk=self.batch_id).values_list("worker", flat=True).first()
        if holder and _dead_here(holder):
            free |= Q(worker=holder)
        taken = (Batch.objects.filter(free, pk=self.batch_id, submitted=True)
                 .exclude(status=Batch.Status.DONE)
                 .update(worker=self.token, heartbeat_at=now))
        if taken:
            Batch.objects.filter(pk=self.batch_id, status=Batch.Status.QUEUED).update(
                status=Batch.Status.RUNNING, started_at=now)
            self._last = time.monotonic()
        return bool(taken)

    def beat(self, force: bool = False) -> None:
        """Renew the heartbeat (at most every ``every`` seconds unless forced)."""
        if not force and time.monotonic() - self._last < self.every:
            return
        if not Batch.objects.filter(pk=self.batch_id, worker=self.token).update(
                heartbeat_at=timezone.now()):
            raise LeaseLost(f"batch {self.batch_id} was taken over by another worker")
        self._last = time.monotonic()

    def hold(self) -> None:
        """Inside a transaction: lock the batch row and check the lease is still ours."""
        if not Batch.objects.select_for_update().filter(pk=self.batch_id,
                                                        worker=self.token).exists():
            raise LeaseLost(f"batch {self.batch_id} was taken over by another worker")

    def release(self) -> None:
        try:
            Batch.objects.filter(pk=self.batch_id, worker=self.token).update(worker="")
        except DatabaseError:  # the heartbeat goes stale and the lease with it
            log.warning("could not release the lease on batch %s", self.batch_id)


def _dead_here(token: str) -> bool:
    """Whether a lease token names a process of this machine that no longer runs (a
    killed pool process: its task comes back at once, no need to wait for staleness)."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
