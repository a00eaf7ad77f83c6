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

log = logging.getLogger(__name__)

PREDICT_BATCH = "webapp.tasks.predict_batch"
ENCODE_IMAGES = "webapp.tasks.encode_images"


def _send(task: str, *args: object) -> bool:
    try:
        current_app.send_task(task, args=args)
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
