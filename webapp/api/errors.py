"""Every API error is JSON with a 'detail' a person can act on; never an HTML 500."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, DatabaseError):
        log.exception("database error in the API")
        return Response({"detail": "the database is busy or unavailable; try again shortly"},
                        status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return None
