"""The heal job in process: which batches it sends again, and that it sends each once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.conftest import make_image
from tests.webapp.helpers import upload
from webapp.models import Batch, RemovedImageCode
from webapp.services import batches, healing
from webapp.services.batches import do_submit_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr("webapp.services.jobs._send", lambda *args: calls.append(args) or True)
    return calls


@pytest.fixture
def heal_now(django_capture_on_commit_callbacks):
    """requeue_stalled as the periodic task runs it: outside a transaction, so what it
    queues is sent at once (the test itself runs inside one)."""
    def run(now):
        with django_capture_on_commit_callbacks(execute=True):
            return batches.do_resend_stalled(now)

    return run


def _batch(user, seed: int, submit: bool = True) -> Batch:
    batch, _ = upload(user, [(f"c{seed}.jpg", make_image(seed=seed))])
    return do_submit_batch(batch) if submit else batch


def test_stalled_batches_are_sent_again_once(user, settings, sent, heal_now):
    settings.BATCH_STALE_SECONDS = 60
    now = timezone.now()
    old = now - timedelta(seconds=61)
    lost = _batch(user, 1)  # Redis lost its message
    Batch.objects.filter(pk=lost.pk).update(queued_at=old)
    dead = _batch(user, 2)  # its worker's machine died mid-batch
    Batch.objects.filter(pk=dead.pk).update(queued_at=old, status="running", worker="w:1:x",
                                            heartbeat_at=old)
    alive = _batch(user, 3)  # running, heartbeat fresh
    Batch.objects.filter(pk=alive.pk).update(queued_at=old, status="running", worker="w:2:y",
                                             heartbeat_at=now)
    waiting = _batch(user, 4)  # sent a moment ago, waiting its turn
    unsent = _batch(user, 5, submit=False)  # the user is still adding files
    Batch.objects.filter(pk=unsent.pk).update(queued_at=None)

    assert sorted(heal_now(now)) == sorted([lost.pk, dead.pk])
    assert sorted(args[1] for args in sent) == sorted([lost.pk, dead.pk])
    assert {args[0] for args in sent} == {"webapp.tasks.predict_batch"}
    # a second heal job (another worker's beat) right after sends nothing
    assert heal_now(now + timedelta(seconds=1)) == []
    # still nothing from them a stale period later: sent again
    later = now + timedelta(seconds=62)
    assert set(heal_now(later)) == {lost.pk, dead.pk, alive.pk, waiting.pk}
    assert waiting.pk not in [args[1] for args in sent[:2]]


def test_a_batch_whose_message_could_not_be_sent_is_healed(user, settings, monkeypatch,
                                                          django_capture_on_commit_callbacks,
                                                          heal_now):
    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("webapp.services.jobs.current_app.send_task", broker_down)
    batch, _ = upload(user, [("a.jpg", make_image(seed=9))])
    with django_capture_on_commit_callbacks(execute=True):
        do_submit_batch(batch)  # the upload itself succeeds
    batch.refresh_from_db()
    assert batch.submitted and batch.status == "queued"
    settings.BATCH_STALE_SECONDS = 0
    calls = []
    monkeypatch.setattr("webapp.services.jobs.current_app.send_task",
                        lambda name, args: calls.append((name, args)))
    assert heal_now(timezone.now() + timedelta(seconds=1)) == [batch.pk]
    assert calls == [("webapp.tasks.predict_batch", (batch.pk,))]


def test_heal_purges_old_tombstones(user, sent):
    RemovedImageCode.objects.create(image_id=1)
    RemovedImageCode.objects.create(image_id=2)
    RemovedImageCode.objects.filter(image_id=1).update(
        removed_at=timezone.now() - timedelta(days=healing.TOMBSTONE_DAYS + 1))
    assert healing.heal()["tombstones_purged"] == 1
    assert list(RemovedImageCode.objects.values_list("image_id", flat=True)) == [2]
