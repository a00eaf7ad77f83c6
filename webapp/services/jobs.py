"""Work for the Celery workers is queued here, and only here.

Services call these functions; messages go out once the current transaction commits (a
worker must see what it is asked to process). Tasks are addressed by name, so this module
imports nothing from ``webapp.tasks``: dependencies run one way, tasks -> services -> jobs.

A message that cannot be sent (the broker is down) is logged, never raised: the edit or
upload that asked for it has committed, and the heal job sends the batch again once it is
stale (``webapp.services.healing``); missing search codes are made by
``manage.py rebuild_index --missing-only``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app
from django.db import transaction

from webapp.conf import app_settings

log = logging.getLogger(__name__)

PREDICT_BATCH = "webapp.tasks.predict_batch"
ENCODE_IMAGES = "webapp.tasks.encode_images"
TRAIN_MODEL = "webapp.tasks.train_model"
RETAG_IMAGES = "webapp.tasks.retag_images"


def _send(task: str, *args: object, queue: str | None = None) -> bool:
    try:
        current_app.send_task(task, args=args, **({"queue": queue} if queue else {}))
    except Exception:  # noqa: BLE001 - logged; the heal job or rebuild_index recovers
        log.exception("could not queue %s%r", task, args)
        return False
    return True


def predict_batch_on_commit(batch_id: int) -> None:
    """Ask a worker to predict a batch's queued items, after the transaction commits."""
    transaction.on_commit(lambda: _send(PREDICT_BATCH, batch_id))


def encode_on_commit(image_ids: Iterable[int], text_only: bool = False) -> None:
    """Ask a worker for these images' search codes (``text_only``: their labels changed,
    the pixels did not), after the transaction commits."""
    ids = sorted(set(image_ids))
    if ids:
        transaction.on_commit(lambda: _send(ENCODE_IMAGES, ids, text_only))


def send_training(job_id: int) -> bool:
    """Send a training job to the training queue now (its own workers: a training takes
    minutes to hours and must not hold up tagging)."""
    return _send(TRAIN_MODEL, job_id, queue=app_settings.TRAINING_QUEUE)


def training_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: send_training(job_id))


def send_retag(job_id: int) -> bool:
    """Send a re-tagging job to the tagging queue now."""
    return _send(RETAG_IMAGES, job_id)


def retag_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: send_retag(job_id))
