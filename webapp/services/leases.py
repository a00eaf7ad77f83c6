"""Long work, one mechanism: who runs a job, its heartbeat, and resending it when it stalls.

A kind of long work (batches, training jobs, re-tagging) is a model whose
rows carry three fields: ``worker`` (the lease holder's token), ``heartbeat_at`` (renewed
while it runs) and ``queued_at`` (when its task was last sent). A ``WorkKind`` names the
model, which of its rows are unfinished, what a worker does when it takes one, and how
its task is sent; nothing else here knows what the work is.

- **Lease.** The worker running a row holds ``worker`` and renews ``heartbeat_at``; it
  commits work only while it still holds the lease (``hold`` inside the transaction), and
  another worker takes the row only once the heartbeat is stale (or its holder, a
  process of the same machine, is gone).
- **Heal.** ``resend_stalled`` (run by the periodic heal job) sends again every
  unfinished row whose heartbeat and last message are both older than the stale time;
  each resend is claimed by compare-and-set on ``queued_at``, so heal jobs in several
  workers send a row once. Tasks are idempotent, so a resend of a running row finds it
  taken and does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, connections, models
from django.db.models import Q, QuerySet
from django.utils import timezone

from webapp.conf import app_settings

log = logging.getLogger(__name__)

__all__ = ["Heartbeat", "Lease", "LeaseLost", "WorkKind", "long_work_kind", "resend_stalled",
           "stalled", "work_under"]


@dataclass(frozen=True)
class WorkKind:
    """One kind of long work, as the lease and the heal job see it."""

    name: str  # "batch": in messages
    plural: str  # "batches"
    model: type[models.Model]
    unfinished: Callable[[], QuerySet]  # rows a worker may run and the heal job resends
    send: Callable[[int], None]  # queue the row's task (after the transaction commits)
    on_claim: Callable[[int, datetime], None] | None = None  # e.g. queued -> running

    @property
    def stale_seconds(self) -> float:
        return app_settings.BATCH_STALE_SECONDS


def long_work_kind(name: str, plural: str, model: type[models.Model],
                   send: Callable[[int], None]) -> WorkKind:
    """The kind of a model with the usual life of long work (``webapp.models.LongWork``:
    ``status`` queued -> running -> done / failed / cancelled): its queued and running
    rows are unfinished, and claiming a queued row starts it."""
    def unfinished() -> QuerySet:
        return model.objects.filter(status__in=model.UNFINISHED)

    def start(pk: int, now: datetime) -> None:
        model.objects.filter(pk=pk, status=model.Status.QUEUED).update(
            status=model.Status.RUNNING, started_at=now)

    return WorkKind(name, plural, model, unfinished, send, start)


class LeaseLost(Exception):
    """Another worker took the work over (this one was silent for too long)."""


class Lease:
    """This worker's claim on one row of a kind of long work, renewed as its heartbeat."""

    def __init__(self, kind: WorkKind, pk: int) -> None:
        self.kind, self.pk = kind, pk
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.every = min(kind.stale_seconds / 4, 10.0)
        self._last = 0.0

    @property
    def _rows(self) -> QuerySet:
        return self.kind.model.objects.filter(pk=self.pk)

    def claim(self) -> bool:
        """Take the row unless another worker holds it with a fresh heartbeat (a holder
        that was a process of this machine and is gone does not count)."""
        now = timezone.now()
        stale = now - timedelta(seconds=self.kind.stale_seconds)
        free = Q(worker="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
        holder = self._rows.values_list("worker", flat=True).first()
        if holder and _dead_here(holder):
            free |= Q(worker=holder)
        taken = self.kind.unfinished().filter(free, pk=self.pk).update(
            worker=self.token, heartbeat_at=now)
        if taken:
            if self.kind.on_claim is not None:
                self.kind.on_claim(self.pk, now)
            self._last = time.monotonic()
        return bool(taken)

    def beat(self, force: bool = False) -> None:
        """Renew the heartbeat (at most every ``every`` seconds unless forced)."""
        if not force and time.monotonic() - self._last < self.every:
            return
        if not self._rows.filter(worker=self.token).update(heartbeat_at=timezone.now()):
            raise LeaseLost(f"{self.kind.name} {self.pk} was taken over by another worker")
        self._last = time.monotonic()

    def hold(self) -> None:
        """Inside a transaction: lock the row and check the lease is still ours."""
        if not self._rows.select_for_update().filter(worker=self.token).exists():
            raise LeaseLost(f"{self.kind.name} {self.pk} was taken over by another worker")

    def release(self) -> None:
        try:
            self._rows.filter(worker=self.token).update(worker="")
        except DatabaseError:  # the heartbeat goes stale and the lease with it
            log.warning("could not release the lease on %s %s", self.kind.name, self.pk)


def work_under(lease: Lease, work: Callable[[Lease], None]) -> bool:
    """Claim ``lease``'s row, run ``work`` under it and release it whatever happens: the
    one life of every kind of long work. False when another worker holds the row (or it
    is finished). A lease lost midway ends the work quietly: its new holder carries on."""
    if not lease.claim():
        return False
    try:
        work(lease)
    except LeaseLost as exc:
        log.warning("%s; this worker stops working on it", exc)
    finally:
        lease.release()
    return True


class Heartbeat:
    """The lease renewed by a thread, for work whose steps outlast the stale time (a
    training epoch): the thread beats every ``lease.every`` seconds and then calls
    ``on_beat`` (e.g. to write progress or read a cancel request). ``lost`` is set when
    another worker took the row over; the work checks it between its own steps."""

    def __init__(self, lease: Lease, on_beat: Callable[[], None] | None = None) -> None:
        self.lease, self.on_beat = lease, on_beat
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat-{lease.kind.name}-{lease.pk}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.lease.every):
                try:
                    self.lease.beat(force=True)
                    if self.on_beat is not None:
                        self.on_beat()
                except LeaseLost:
                    self.lost.set()
                    return
                except DatabaseError:  # a hiccup: the next beat tries again
                    log.warning("heartbeat of %s %s failed", self.lease.kind.name,
                                self.lease.pk, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connection


def stalled(kind: WorkKind, now: datetime | None = None) -> QuerySet:
    """Unfinished rows with no sign of life (heartbeat or message) for the stale time."""
    cutoff = (now or timezone.now()) - timedelta(seconds=kind.stale_seconds)
    return (kind.unfinished()
            .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff))
            .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff)))


def resend_stalled(kind: WorkKind, now: datetime | None = None) -> list[int]:
    """Send every stalled row's task again (claimed by compare-and-set on ``queued_at``);
    returns the ids this call sent."""
    now = now or timezone.now()
    sent = []
    for pk, queued_at in stalled(kind, now).values_list("pk", "queued_at"):
        if kind.model.objects.filter(pk=pk, queued_at=queued_at).update(queued_at=now):
            kind.send(pk)  # outside a transaction: sent now
            sent.append(pk)
    if sent:
        log.warning("heal: sent %d stalled %s again: %s", len(sent), kind.plural, sent)
    return sent


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
