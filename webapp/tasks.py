"""Celery tasks: thin wrappers over the services, with one retry policy for all.

Every task is acknowledged late and rejected when its worker is lost (settings), so a
message is never dropped by a crash; the services make every task idempotent.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import worker_init
from django.db import DatabaseError, InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from webapp.conf import prepare_var_dir
from webapp.services import activation, healing, recognition, search, trainings

log = logging.getLogger(__name__)


@worker_init.connect
def refuse_to_start_without_the_model(**_kwargs) -> None:
    """A worker verifies the active model's files before it takes any task: one that
    would fail every image refuses to start instead (its supervisor shows why)."""
    prepare_var_dir()  # a bare `celery -A webapp worker` on the embedded SQLite database
    try:
        version = recognition.check_model()
    except DatabaseError:
        log.warning("the database is not reachable; the model is checked at first use")
        return
    except recognition.ModelUnavailable as exc:
        log.critical("this worker does not start: %s", exc)
        raise SystemExit(f"worker refused to start: {exc}") from None
    log.info("model %s verified", version)


class WorkerTask(Task):
    """The retry policy, defined once: database and broker hiccups are retried with
    exponential backoff (jittered, at most 2 minutes apart, 10 times)."""

    # OSError covers connection and disk errors; a model that cannot be loaded is waited
    # for too (an operator restores it; nothing is failed meanwhile)
    autoretry_for = (OperationalError, InterfaceError, BrokerError, ConnectionError,
                     TimeoutError, OSError, recognition.ModelUnavailable)
    retry_backoff = 2
    retry_backoff_max = 120
    retry_jitter = True
    max_retries = 10


@shared_task(base=WorkerTask)
def predict_batch(batch_id: int) -> dict[str, int | str] | None:
    """Predict a batch's queued images. Idempotent: safe to run twice or after a crash."""
    batch = recognition.process_batch(batch_id)
    if batch is None:
        return None
    return {"batch": batch.pk, "status": batch.status, "done": batch.done,
            "failed": batch.failed}


@shared_task(base=WorkerTask)
def encode_images(image_ids: list[int], text_only: bool = False) -> int:
    """Search codes for re-tagged images (``text_only``) or for images without codes."""
    if not search.available():
        return 0
    return search.encode_images(image_ids, text_only=text_only)


@shared_task(base=WorkerTask)
def heal_queue() -> dict[str, int]:
    """Periodic (Celery beat): resend stalled or lost batches, purge old tombstones."""
    return healing.heal()


@shared_task(base=WorkerTask)
def train_model(job_id: int) -> dict[str, object] | None:
    """Run or resume a training job (on the training queue). Idempotent."""
    job = trainings.run(job_id)
    return None if job is None else {"training": job.pk, "status": job.status}


@shared_task(base=WorkerTask)
def retag_images(job_id: int) -> dict[str, object] | None:
    """Re-tag the unreviewed images with an activated model. Idempotent, resumable."""
    job = activation.run_retag(job_id)
    return None if job is None else {"retag": job.pk, "status": job.status, "done": job.done}
