"""API rate limits: DRF's throttles on the shared cache, failing open when it is down.

Counters live in Django's default cache, the configured Redis (settings.CACHES), so N web
processes share one limit. Clients are told apart by the connection's peer, or by the
X-Forwarded-For entry written by the last of NUM_PROXIES trusted proxies (DRF's rule).
Should Redis be unreachable, a request is let through and the outage logged: a throttle
must not turn a cache outage into an outage of the whole API. A hung Redis costs one
socket timeout (settings.CACHES, about 1 s), then the process skips the cache for
CACHE_RETRY_SECONDS instead of paying it on every request.

The HTML pages that search or filter (the gallery with ``q``, ``similar`` or tag filters)
share the same counters through ``page_allowed``.
"""

from __future__ import annotations

import logging
import time

from django.core.exceptions import ImproperlyConfigured
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

log = logging.getLogger(__name__)

CACHE_RETRY_SECONDS = 5.0
_cache_down_until = 0.0


class FailOpen:
    def allow_request(self, request, view) -> bool:
        global _cache_down_until
        if time.monotonic() < _cache_down_until:
            return True  # the cache failed a moment ago: do not wait on it again
        try:
            return super().allow_request(request, view)
        except ImproperlyConfigured:
            raise  # a scope without a rate is a bug, not an outage
        except Exception:  # noqa: BLE001 - redis-py's ConnectionError, TimeoutError and kin
            _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
            log.warning("throttle cache unreachable; requests let through for %.0f s",
                        CACHE_RETRY_SECONDS, exc_info=True)
            return True


class AnonThrottle(FailOpen, AnonRateThrottle):
    pass


class UserThrottle(FailOpen, UserRateThrottle):
    pass


class ScopedThrottle(FailOpen, ScopedRateThrottle):
    pass


class _Page:
    """What DRF's scoped throttle needs of a view: its scope."""

    def __init__(self, scope: str) -> None:
        self.throttle_scope = scope


def page_allowed(request, scope: str) -> tuple[bool, float | None]:
    """(allowed, seconds to wait) for an HTML page in throttle ``scope`` (a rate in
    REST_FRAMEWORK's DEFAULT_THROTTLE_RATES), counted per user or, logged out, per IP."""
    throttle = ScopedThrottle()
    allowed = throttle.allow_request(request, _Page(scope))
    return allowed, None if allowed else throttle.wait()
