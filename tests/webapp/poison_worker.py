"""A Celery app for tests whose worker dies on chosen images, as a poison input kills one.

``celery -A tests.webapp.poison_worker worker`` runs the real app with one change: the
stored images whose sha256 is listed in ``POISON_SHA256`` kill the process decoding them
(SIGKILL, no cleanup). The production code has no hook for this; the test injects it.
"""

import os
import signal

import django

from webapp.celery import app

django.setup()  # the models must be ready before the worker module is imported

from webapp.services import recognition  # noqa: E402

__all__ = ["app"]

_POISON = set(filter(None, os.environ.get("POISON_SHA256", "").split(",")))
_decode = recognition.decode_for_pipeline


def _decode_or_die(image, *args, **kwargs):
    if image.sha256 in _POISON:
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode(image, *args, **kwargs)


recognition.decode_for_pipeline = _decode_or_die
