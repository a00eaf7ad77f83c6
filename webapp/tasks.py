"""Celery tasks: thin wrappers; the work is in webapp.services.recognition."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

log = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120,
             retry_jitter=True, max_retries=10)
def predict_batch(self, batch_id: int) -> dict[str, int | str] | None:
    """Predict a batch's queued images. Idempotent: safe to run twice or after a crash."""
    from webapp.services.recognition import process_batch

    batch = process_batch(batch_id)
    if batch is None:
        return None
    return {"batch": batch.pk, "status": batch.status, "done": batch.done,
            "failed": batch.failed}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120,
             retry_jitter=True, max_retries=10)
def encode_images(self, image_ids: list[int]) -> int:
    """Hash codes for search, for new or re-tagged images (idempotent)."""
    from webapp.services import search

    if not search.available():
        return 0
    return search.encode_images(image_ids)


def encode_later(image_ids: list[int]) -> None:
    """Queue encode_images once the current transaction commits.

    A broker outage must not fail the edit that triggered it: the codes can be made
    later with `manage.py rebuild_index --missing-only`.
    """
    from django.db import transaction

    ids = sorted(set(image_ids))

    def send() -> None:
        try:
            encode_images.delay(ids)
        except Exception:  # noqa: BLE001 - logged, recoverable by rebuild_index
            log.exception("could not queue search codes for %d images", len(ids))

    if ids:
        transaction.on_commit(send)
