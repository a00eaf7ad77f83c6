"""API rate limits: DRF's throttles on the shared cache, failing open when it is down.

Counters live in Django's default cache, the configured Redis (settings.CACHES), so N web
processes share one limit. Clients are told apart by the connection's peer, or by the
X-Forwarded-For entry written by the last of NUM_PROXIES trusted proxies (DRF's rule).
Should Redis be unreachable, a request is let through and the outage logged: a throttle
must not turn a cache outage into an outage of the whole API.
"""

from __future__ import annotations

import logging

from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

log = logging.getLogger(__name__)


class FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - redis-py's ConnectionError and kin
            log.warning("throttle cache unreachable; request let through", exc_info=True)
            return True


class AnonThrottle(FailOpen, AnonRateThrottle):
    pass


class UserThrottle(FailOpen, UserRateThrottle):
    pass


class ScopedThrottle(FailOpen, ScopedRateThrottle):
    pass
