"""Celery tasks: thin wrappers; the work is in webapp.services.recognition."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from webapp.services.recognition import process_batch

TRANSIENT = (OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120,
             retry_jitter=True, max_retries=10)
def predict_batch(self, batch_id: int) -> dict[str, int | str] | None:
    """Predict a batch's queued images. Idempotent: safe to run twice or after a crash."""
    batch = process_batch(batch_id)
    if batch is None:
        return None
    return {"batch": batch.pk, "status": batch.status, "done": batch.done,
            "failed": batch.failed}
